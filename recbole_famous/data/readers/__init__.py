"""One reader per published format. Each module has FORMAT (its name), detect(files) -> the
files it would read from a source (or None; forced=True skips sniffing the content, for
--format), and read(files) -> Interactions."""

from . import amazon_reviews, ijcai15_log, online_retail, sessions, unisrec, user_json

# detection order: the most specific formats first
READERS = {m.FORMAT: m for m in (unisrec, online_retail, ijcai15_log, amazon_reviews, user_json, sessions)}
