"""Paired statistics over seeds (against hand computations), the study tables, and the committed
results: every table under docs/results is exactly what the command regenerates from the records."""

import json
import shutil
from pathlib import Path

import pytest

from lplgrad.compare.cli import main as compare_main
from lplgrad.compare.paired import paired, pairs_to_compare, paired_table, t_interval
from lplgrad.compare.study import write_study

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def test_paired_difference_by_hand():
    a = {"seed0": 60.0, "seed1": 62.0, "seed2": 65.0, "seed9": 70.0}  # seed9: no partner, left out
    b = {"seed0": 58.0, "seed1": 62.0, "seed2": 61.0}
    p = paired(a, b)
    # differences 2, 0, 4: mean 2, sample sd 2, standard error 2/sqrt(3); t(0.975, 2) = 4.302653
    half = 4.302653 * 2 / 3**0.5
    assert (p.n, p.wins, p.ties, p.losses) == (3, 2, 1, 0)
    assert p.mean == pytest.approx(2.0)
    assert (p.low, p.high) == pytest.approx((2 - half, 2 + half), abs=1e-5)
    assert p.includes_zero
    clear = paired({"x": 3.0, "y": 3.5, "z": 2.5, "w": 3.0}, {"x": 1.0, "y": 1.0, "z": 1.0, "w": 1.0})
    assert clear.mean == pytest.approx(2.0) and not clear.includes_zero  # sd 0.408, t(0.975, 3) = 3.182446
    assert (clear.low, clear.high) == pytest.approx(
        (2 - 3.182446 * 0.4082483 / 2, 2 + 3.182446 * 0.4082483 / 2), abs=1e-5
    )
    one = paired({"s": 1.0}, {"s": 0.0})
    assert one.low is None and one.includes_zero and t_interval([1.0]) is None
    assert paired({"s": 1.0}, {"t": 0.0}) is None


def test_which_pairs_are_compared():
    assert pairs_to_compare(["LPLgrad", "Entropy", "Random"], "Random", "LPLgrad") == [
        ("LPLgrad", "Random"),
        ("Entropy", "Random"),
        ("LPLgrad", "Entropy"),
    ]
    assert pairs_to_compare(["Entropy", "Margin"], "Random", "LPLgrad") == []


def test_paired_table_uses_aulc_and_accuracy_at_sizes():
    def rows(accs):
        return [
            {
                "round": i,
                "labeled": 100 * (i + 1),
                "test_acc": a,
                "train_seconds": 1,
                "query_seconds": 1,
                "queried": [0],
            }
            for i, a in enumerate(accs)
        ]

    runs = {
        "LPLgrad": {"seed0": rows([0.5, 0.7]), "seed1": rows([0.6, 0.8])},
        "Random": {"seed0": rows([0.5, 0.6]), "seed1": rows([0.6, 0.6])},
    }
    ((a, b, (aulc, at200)),) = paired_table(runs, [200], "Random", "LPLgrad")
    assert (a, b) == ("LPLgrad", "Random")
    assert at200.mean == pytest.approx(15.0) and (at200.wins, at200.losses) == (2, 0)  # +10 and +20 points
    assert aulc.mean == pytest.approx(7.5)  # AULC: mean of the two points' differences, halved


def test_study_tables_by_hand(tmp_path):
    for arm, accs in (("with", [0.50, 0.60, 0.70]), ("without", [0.52, 0.61, 0.69])):
        for s, acc in enumerate(accs):
            run = tmp_path / "runs" / arm / f"seed{s}"
            run.mkdir(parents=True)
            (run / "rounds.jsonl").write_text(json.dumps({"round": 0, "labeled": 10, "test_acc": acc}) + "\n")
            (run / "finished.json").write_text("{}")
    spec = tmp_path / "study.json"
    spec.write_text(
        json.dumps(
            {
                "title": "t",
                "a": "with A",
                "b": "without A",
                "tables": [
                    {
                        "name": "one",
                        "plot": "one.png",
                        "rows": [{"label": "10", "x": 10, "a": "runs/with", "b": "runs/without"}],
                    }
                ],
            }
        )
    )
    write_study(spec)
    row = (tmp_path / "one.csv").read_text().splitlines()[1].split(",")
    assert row[:3] == ["10", "10", "3"] and float(row[7]) == pytest.approx(-0.6667, abs=1e-4)  # -2, -1, +1 points
    assert row[-3:] == ["1", "0", "2"] and (tmp_path / "one.png").is_file()


def committed_reports() -> list[Path]:
    return sorted(p.parent for p in RESULTS.glob("*/report.json"))


def test_results_are_committed():
    assert (RESULTS / "fashion_mnist" / "report.json").is_file()
    assert committed_reports()


@pytest.mark.parametrize("out", committed_reports(), ids=lambda p: p.name)
def test_collect_only_regenerates_every_committed_table(tmp_path, out):
    copy = tmp_path / out.name
    shutil.copytree(out, copy)
    for f in copy.glob("*.md"):
        f.unlink()
    for f in copy.glob("*.csv"):
        f.unlink()
    assert compare_main(["--collect-only", "--out", str(copy)]) == 0
    tables = sorted(p.name for p in out.glob("*.md")) + sorted(p.name for p in out.glob("*.csv"))
    assert tables and tables == sorted(p.name for p in copy.glob("*.md")) + sorted(p.name for p in copy.glob("*.csv"))
    for name in tables:
        assert (copy / name).read_text() == (out / name).read_text(), name


@pytest.mark.parametrize("spec", sorted(RESULTS.glob("*/study.json")), ids=lambda p: p.parent.name)
def test_study_regenerates_every_committed_table(tmp_path, spec):
    study = json.loads(spec.read_text())
    copy = tmp_path / "results"
    shutil.copytree(RESULTS, copy, ignore=shutil.ignore_patterns("*.png"))
    write_study(copy / spec.parent.name / "study.json")
    for t in study["tables"]:
        for ext in (".md", ".csv"):
            assert (copy / spec.parent.name / (t["name"] + ext)).read_text() == (
                spec.parent / (t["name"] + ext)
            ).read_text()


def test_readme_paired_cells_are_the_committed_ones():
    """Every cell of the README's paired table is the committed paired.md's cell for that row."""
    committed = {}
    for line in (RESULTS / "fashion_mnist" / "paired.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[1].isdigit():  # comparison, seeds, AULC, acc@300, acc@600, acc@1000
            committed[cells[0]] = (cells[2], cells[5])
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| LPLgrad −") or line.startswith("| Entropy −")]
    assert len(rows) >= 4
    for line in rows:
        name, aulc, at_1000 = [c.strip() for c in line.strip("|").split("|")]
        assert committed[name] == (aulc, at_1000), name


@pytest.mark.parametrize(
    "table",
    [
        "fashion_mnist/table.md",
        "fashion_mnist/aulc.md",
        "fashion_mnist/paired.md",
        "aux_study/by_size.md",
        "aux_study/why_n1000.md",
    ],
)
def test_comparison_doc_shows_the_committed_tables(table):
    """docs/comparison.md quotes each committed table whole: every row of it, verbatim."""
    doc = set((ROOT / "docs" / "comparison.md").read_text().splitlines())
    rows = [line for line in (RESULTS / table).read_text().splitlines() if line.startswith("|")]
    assert len(rows) >= 3
    assert [r for r in rows if r not in doc] == []
