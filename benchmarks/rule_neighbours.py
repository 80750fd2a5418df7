"""ItemCoOccurrence on the validation split: how many cosine neighbours to keep, and how popularity breaks ties.

Builds each dataset once, fits the rule in one pass per setting and evaluates it with the plugin's trainer
(RecBole's full-ranking evaluator, validation split only):
  python benchmarks/rule_neighbours.py --datasets OR,Instruments [--neighbours 100,1000,0] [--tie-scales 1,1e-9]
``--neighbours 0`` keeps every nonzero cosine (the default of props/model/ItemCoOccurrence.yaml). Tie scale 1 adds
popularity / (max + 1) to the cosine sums at full size, as the rule did before 5 Dec 2026; 1e-9 is today's
(recbole_famous/model/rules/base.py). Prepared datasets under dataset/ (python -m recbole_famous.data prepare).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from recbole_famous import pipeline


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="OR,Instruments")
    parser.add_argument("--neighbours", default="100,1000,0", help="values of rule_neighbours (0: all)")
    parser.add_argument("--tie-scales", default="1,1e-9", help="popularity tie-break scales")
    args = parser.parse_args()
    print("dataset       ties   neighbours   nonzeros   fit s   eval s   valid NDCG@10   valid HR@10", flush=True)
    for name in args.datasets.split(","):
        config = pipeline.build_config("ItemCoOccurrence", name, overrides={"show_progress": False,
                                                                           "state": "WARNING"})
        dataset = pipeline.create_dataset(config)
        train_data, valid_data, _ = pipeline.data_preparation(config, dataset)
        for scale in (float(s) for s in args.tie_scales.split(",")):
            for k in (int(v) for v in args.neighbours.split(",")):
                config["rule_neighbours"] = k
                model = pipeline.build_model(config, train_data._dataset)
                model.tie_scale = scale
                start = time.perf_counter()
                model.fit_pass(train_data._dataset)
                fitted = time.perf_counter()
                with tempfile.TemporaryDirectory() as out:
                    trainer = pipeline.get_trainer(config, model, out, saved_model_file=f"{out}/m.pth")
                    result = trainer.evaluate(valid_data, load_best_model=False)
                done = time.perf_counter()
                print(f"{name:12s} {scale:6g} {k if k else 'all':>11} {model.values.numel():>10,} "
                      f"{fitted - start:7.1f} {done - fitted:8.1f} {result['ndcg@10']:15.4f} {result['hit@10']:13.4f}",
                      flush=True)


if __name__ == "__main__":
    main()
