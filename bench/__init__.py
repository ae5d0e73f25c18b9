"""`make bench` / `python -m bench`: understanding, routing and speed of 青城诉求 against
alternatives, written to bench/results/ (report.md + PNG plots).

Modules, one per concern:
  data          held-out split, training data, cross-validation folds, fold files
  systems       the four classifiers compared (ours, stock Rasa zh, TF-IDF + LR, keywords)
  training      `rasa train` / `rasa train nlu` in temporary directories, timed
  understanding accuracy / macro-F1 / per-category figures, confusion-matrix plots
  routing       lead department + street right, with our router and location resolution
  load          the real servers over HTTP: simulated residents, parse latency, RSS, ticket store
  report        report.md and the table printed at the end
  cli           the run itself (`python -m bench [--quick] [--out DIR]`)

A benchmark never fails for being slow: it reports, it does not assert.
"""
