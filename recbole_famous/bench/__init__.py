"""Side-by-side benchmark, ablations and the paper's analyses (FamouSRec, WWW 2025: Table 2, Table 3,
Figure 4, Table 5, Figures 1-2, Appendix A.4), as commands that write run JSONs, tables and plots.

Modules, one concept each:

* ``plan``: budget profiles (``props/bench/<name>.yaml``) and the model x dataset x seed run list;
* ``runs``: run one planned run in a subprocess through ``recbole_famous.runner.run``, one JSON per run,
  resume without rerunning finished runs;
* ``worker``: what that subprocess executes (train, test, efficiency, peak memory);
* ``efficiency``: parameters (total, active per user), inference time per 1,000 users;
* ``trained``: a finished run's model and data, its best checkpoint loaded by ``pipeline.load_trained``;
* ``table``: Table-2-style Markdown and CSV (mean ± spread over seeds, best/second best, improvement);
* ``peruser``: a finished run's per-user test metrics from its checkpoint, RecBole's own, checked and cached;
* ``compare``: Table 2 against the best baseline chosen on validation, paired tests over test users,
  validation learning curves, for profiles whose runs may still be going;
* ``archive``: finished records (and per-user metrics) copied to a committed folder and back, so that a new
  machine does not rerun them;
* ``ablations``: Table 3 / Figure 4 / Table 5 as FamouSRec config variants;
* ``analysis`` and ``plots``: Figure 1, Figure 2, expert shares, Appendix A.4;
* ``__main__``: ``python -m recbole_famous.bench {run,status,table,compare,archive,restore,ablations,analyze}``.
"""
