"""The paper's Table 1 statistics of a dataset: #sequences, #items, #actions, average
sequence length and sparsity (1 - actions / (sequences * items)).

Two conventions for #actions: the true count of interactions, and the paper's, which counts the training rows of
leave-one-out (each interaction after a sequence's first): actions minus one per sequence. On OR the paper's
503,386 is 519,906 - 16,520."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Table1:
    sequences: int
    items: int
    actions: int

    @property
    def paper_actions(self):
        """#actions as the paper's Table 1 counts them: one per interaction after each sequence's first."""
        return self.actions - self.sequences

    @property
    def avg_length(self):
        return self.actions / self.sequences if self.sequences else 0.0

    @property
    def sparsity(self):
        cells = self.sequences * self.items
        return 1.0 - self.actions / cells if cells else 0.0

    def as_dict(self):
        return dict(asdict(self), avg_length=round(self.avg_length, 4), sparsity=round(self.sparsity, 6),
                    paper_actions=self.paper_actions)


def from_columns(users, items):
    """Statistics of parallel user / item columns (one entry per action)."""
    return Table1(len(set(users)), len(set(items)), len(users))


def inter_columns(path, with_time: bool = False) -> tuple:
    """``(users, items)``: the first two columns of a prepared atomic `.inter` file, one entry per row; with
    ``with_time``, ``(users, items, timestamps)`` (the third column, as floats)."""
    users, items, times = [], [], []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            u, i, rest = line.split("\t", 2)
            users.append(u)
            items.append(i)
            if with_time:
                times.append(float(rest.split("\t", 1)[0]))
    return (users, items, times) if with_time else (users, items)


def from_inter_file(path):
    """Statistics of a prepared atomic `.inter` file (first two columns: user, item)."""
    users, items = inter_columns(path)
    return Table1(len(set(users)), len(set(items)), len(users))


def from_recbole(dataset):
    """Statistics of a loaded RecBole dataset (after its filtering; padding id excluded)."""
    return Table1(dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num)


def format_table(rows):
    """rows: {label: Table1} -> a small aligned text table in the paper's layout."""
    head = (f"{'':<34} {'#Sequences':>11} {'#Items':>8} {'#Actions':>10} {'Avg.len':>8} {'Sparsity':>9} "
            f"{'#Actions as the paper counts':>28}")
    lines = [head]
    for label, t in rows.items():
        lines.append(f"{label:<34} {t.sequences:>11,} {t.items:>8,} {t.actions:>10,} "
                     f"{t.avg_length:>8.2f} {100 * t.sparsity:>8.2f}% {t.paper_actions:>28,}")
    return "\n".join(lines)


def describe(dataset):
    """Table-1 text for a loaded RecBole dataset: as converted (from `<name>.prepared.json`, else
    its `.inter` file) and after RecBole's filtering. For the runner to log after create_dataset."""
    import json
    from pathlib import Path

    name, folder = dataset.dataset_name, Path(dataset.dataset_path)
    rows = {}
    info, inter = folder / f"{name}.prepared.json", folder / f"{name}.inter"
    if info.is_file() and inter.is_file() and info.stat().st_mtime >= inter.stat().st_mtime:
        conv = json.loads(info.read_text())["as_converted"]
        rows[f"{name} as converted"] = Table1(conv["sequences"], conv["items"], conv["actions"])
    elif inter.is_file():
        rows[f"{name} as converted"] = from_inter_file(inter)
    rows[f"{name} after RecBole filter"] = from_recbole(dataset)
    return format_table(rows)
