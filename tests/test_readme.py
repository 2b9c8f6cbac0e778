"""The README tells supervisors what each strategy does, in the words the strategy declares, so the
two cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from strategies.policy import STRATEGIES

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_strategy_is_in_the_readme_in_its_declared_words():
    summaries = {declared.summary for declared in STRATEGIES.values()}
    rows = [line.split("|")[1:3] for line in README.splitlines() if line.startswith("| `") and line.count("|") == 3]
    told = {name.split("`")[1]: text.strip() for name, text in rows if text.strip() in summaries}
    assert told == {name: declared.summary for name, declared in STRATEGIES.items()}


def test_every_summary_is_two_short_sentences():
    for name, declared in STRATEGIES.items():
        sentences = [part for part in declared.summary.split(". ") if part]
        assert len(sentences) == 2 and len(declared.summary) <= 200, (name, declared.summary)
