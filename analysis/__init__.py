"""Trial table -> per-latent-size summary -> selection; figures; the HTML report (no ray)."""
