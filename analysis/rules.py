"""The names of the selection rules and their defaults (kept light: the command line imports it
for --help)."""

RULES = ("tolerance", "one-se", "knee")
DEFAULT_RULE = "tolerance"
# Practical equivalence, in dB of mean PSNR: sizes closer than this to the best count as equally
# good and the smallest is taken. 0.3 dB is the SD of the difference between two trainings of one
# size with different seeds on the quick preset (sqrt(2) x 0.21 dB, bench/seed_spread.py): a gap
# smaller than what retraining alone produces is not a property of the latent size.
DEFAULT_TOLERANCE_DB = 0.3
