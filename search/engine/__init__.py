"""The run itself: the Ray session, the data, the Tuner and its searcher, scheduler, trial and
callbacks. The only layer of `search` that imports ray."""
