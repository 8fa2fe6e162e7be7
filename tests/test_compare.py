"""The comparison command: the report tables and files, from hand-made runs (the sweeps: test_compare_sweep.py)."""

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from helpers.records import read_csv, sd
from lplgrad.compare import (
    ABLATION,
    ablation_table,
    accuracy_table,
    aulc_table,
    load_runs,
    mean_std,
    reach_table,
    run_aulc,
    run_timing,
    timing_table,
)
from lplgrad.compare.cli import main


def rows_of(labeled, acc, train, query):
    """rounds.jsonl rows; every round but the last queried something."""
    n = len(labeled)
    return [
        {
            "round": i,
            "labeled": labeled[i],
            "test_acc": acc[i],
            "train_seconds": train[i],
            "query_seconds": query[i],
            "queried": list(range(3)) if i < n - 1 else [],
        }
        for i in range(n)
    ]


def write_run(out, folder, seed, rows, finished=True):
    d = Path(out) / "runs" / folder / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        (d / "finished.json").write_text(json.dumps({"rounds": len(rows)}) + "\n")
    return d


L = [10, 20, 30]
HAND = {
    ("LPLgrad", 0): rows_of(L, [0.50, 0.60, 0.70], [1.0, 2.0, 3.0], [0.5, 0.7, 0.0]),
    ("LPLgrad", 1): rows_of(L, [0.54, 0.62, 0.76], [1.2, 2.2, 3.2], [0.6, 0.8, 0.0]),
    ("Random", 0): rows_of(L, [0.40, 0.50, 0.55], [1.0, 1.0, 1.0], [0.1, 0.1, 0.0]),
    ("Random", 1): rows_of(L, [0.44, 0.56, 0.65], [1.0, 1.0, 1.0], [0.1, 0.3, 0.0]),
}


@pytest.fixture
def hand_runs(tmp_path):
    out = tmp_path / "cmp"
    for (m, s), rows in HAND.items():
        write_run(out, m, s, rows)
    return out


# ---- pure aggregation -------------------------------------------------------------------------
def test_mean_std():
    s = mean_std([60.0, 62.0])
    assert (s.mean, s.n) == (61.0, 2) and s.std == pytest.approx(math.sqrt(2))
    one = mean_std([70.0])
    assert (one.mean, one.std, one.n) == (70.0, None, 1)
    assert mean_std([]) is None


def test_aulc_and_timing_of_one_run():
    rows = HAND[("LPLgrad", 0)]
    assert run_aulc(rows) == pytest.approx((10 * (50 + 60) / 2 + 10 * (60 + 70) / 2) / 20)  # 60.0
    uneven = rows_of([10, 20, 50], [0.5, 0.6, 0.9], [1, 1, 1], [0, 0, 0])
    assert run_aulc(uneven) == pytest.approx((10 * 55 + 30 * 75) / 40)  # widths follow the labeled sizes
    assert run_aulc(rows_of([10], [0.5], [1], [0])) == pytest.approx(50.0)
    train, query, total = run_timing(rows)
    assert train == pytest.approx(2.0)  # (1 + 2 + 3) / 3
    assert query == pytest.approx(0.6)  # (0.5 + 0.7) / 2: the last round queried nothing
    assert total == pytest.approx(6.0 + 1.2)


def test_tables_from_load_runs(hand_runs):
    runs = load_runs(hand_runs)
    assert list(runs) == ["LPLgrad", "Random"] and list(runs["LPLgrad"]) == ["seed0", "seed1"]
    acc = accuracy_table(runs, [10, 20, 30])
    s = acc["LPLgrad"][30]
    assert s.mean == pytest.approx(73.0) and s.std == pytest.approx(sd(70, 76)) and s.n == 2
    assert acc["Random"][20].mean == pytest.approx(53.0)
    aulc = aulc_table(runs)
    assert [r.method for r in aulc] == ["LPLgrad", "Random"]
    assert aulc[0].aulc.mean == pytest.approx((60.0 + 63.5) / 2)
    assert aulc[1].aulc.mean == pytest.approx((48.75 + 55.25) / 2)
    assert aulc[1].aulc.std == pytest.approx(sd(48.75, 55.25))
    t = timing_table(runs)["LPLgrad"]
    assert t.train.mean == pytest.approx(2.1) and t.query.mean == pytest.approx(0.65)
    assert t.total.mean == pytest.approx((7.2 + 8.0) / 2)
    assert ablation_table(runs) is None  # no "LPLgrad w/o A" runs


def test_ablation_at_fractions_of_the_budget(tmp_path):
    out = tmp_path / "abl"
    sizes = list(range(10, 101, 10))
    for s in (0, 1):
        write_run(out, "LPLgrad", s, rows_of(sizes, [0.5 + 0.04 * i + 0.01 * s for i in range(10)], [1] * 10, [0] * 10))
        write_run(
            out, ABLATION.slug, s, rows_of(sizes, [0.5 + 0.03 * i - 0.01 * s for i in range(10)], [1] * 10, [0] * 10)
        )
    ab = ablation_table(load_runs(out))
    assert ab.budget == 100
    assert ab.columns == [
        ("1/3 of budget", 30),
        ("1/2 of budget", 50),
        ("entire budget", 100),
    ]  # nearest recorded sizes
    assert [w.mean for w in ab.with_aux] == pytest.approx([58.5, 66.5, 86.5])
    assert [w.mean for w in ab.without_aux] == pytest.approx([55.5, 61.5, 76.5])
    assert ab.difference == pytest.approx([3.0, 5.0, 10.0])
    main(["--collect-only", "--out", str(out)])
    md = (out / "ablation.md").read_text()
    assert "| 1/3 of budget (30) | 1/2 of budget (50) | entire budget (100) |" in md
    assert "| with A (LPLgrad) | 58.50 ± 0.71 | 66.50 ± 0.71 | 86.50 ± 0.71 |" in md
    assert "| difference (with − w/o) | +3.00 | +5.00 | +10.00 |" in md
    rows = read_csv(out / "ablation.csv")
    assert [int(r["labeled"]) for r in rows] == [30, 50, 100]
    assert float(rows[2]["without_mean"]) == pytest.approx(76.5)
    for s in (0, 1):  # without the ablation runs the report drops the ablation table
        (out / "runs" / ABLATION.slug / f"seed{s}" / "finished.json").unlink()
    main(["--collect-only", "--out", str(out)])
    assert not (out / "ablation.md").exists() and not (out / "ablation.csv").exists()


# ---- the report command on hand-made runs -------------------------------------------------------
def test_report_files(hand_runs, capsys):
    assert main(["--collect-only", "--out", str(hand_runs), "--at", "20", "30"]) == 0
    md = (hand_runs / "table.md").read_text()
    assert "| method | seeds | 20 | 30 |" in md
    assert "| LPLgrad | 2 | 61.00 ± 1.41 | 73.00 ± 4.24 |" in md  # 60, 62 and 70, 76
    assert "| Random | 2 | 53.00 ± 4.24 | 60.00 ± 7.07 |" in md  # 50, 56 and 55, 65
    assert md.index("| LPLgrad") < md.index("| Random")
    assert "61.00 ± 1.41" in capsys.readouterr().out  # the table is printed too
    rows = read_csv(hand_runs / "table.csv")
    assert [r["method"] for r in rows] == ["LPLgrad", "Random"]
    lpl = rows[0]
    assert lpl["seeds"] == "2" and lpl["n@30"] == "2" and "mean@10" not in lpl
    assert float(lpl["mean@20"]) == pytest.approx(61.0) and float(lpl["std@20"]) == pytest.approx(sd(60, 62), abs=1e-4)
    assert float(rows[1]["mean@30"]) == pytest.approx(60.0) and float(rows[1]["std@30"]) == pytest.approx(
        sd(55, 65), abs=1e-4
    )

    timing = read_csv(hand_runs / "timing.csv")
    assert [r["method"] for r in timing] == ["LPLgrad", "Random"]
    assert float(timing[0]["train_mean"]) == pytest.approx(2.1)
    assert float(timing[0]["train_std"]) == pytest.approx(sd(2.0, 2.2), abs=1e-4)
    assert float(timing[0]["query_mean"]) == pytest.approx(0.65)
    assert float(timing[1]["query_mean"]) == pytest.approx((0.1 + 0.2) / 2)
    timing_md = (hand_runs / "timing.md").read_text()
    assert "| LPLgrad | 2 | 2.1 ± 0.1 | " in timing_md and " | 7.6 ± 0.6 |" in timing_md

    aulc = read_csv(hand_runs / "aulc.csv")
    assert [r["method"] for r in aulc] == ["LPLgrad", "Random"]  # best first
    assert float(aulc[0]["aulc_mean"]) == pytest.approx(61.75)
    assert float(aulc[1]["aulc_mean"]) == pytest.approx(52.0)
    assert float(aulc[1]["aulc_std"]) == pytest.approx(sd(48.75, 55.25), abs=1e-4)
    assert "| 1 | LPLgrad | 2 | 61.75 ± 2.47 | 10–30 |" in (hand_runs / "aulc.md").read_text()
    assert not (hand_runs / "ablation.md").exists()

    with Image.open(hand_runs / "curves.png") as im:
        im.verify()
    with Image.open(hand_runs / "curves.png") as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200


def test_default_sizes_missing_cells_and_unfinished_runs(hand_runs, capsys):
    write_run(hand_runs, "Entropy", 0, rows_of([10, 20, 40], [0.3, 0.4, 0.8], [1] * 3, [1] * 3))
    write_run(hand_runs, "Entropy", 1, rows_of([10, 20], [0.5, 0.6], [1] * 2, [1] * 2))
    write_run(hand_runs, "Margin", 0, rows_of([10], [0.9], [1], [1]), finished=False)  # interrupted
    assert main(["--collect-only", "--out", str(hand_runs)]) == 0
    assert "1 run(s) not finished, left out of the report: Margin/seed0" in capsys.readouterr().out
    md = (hand_runs / "table.md").read_text()
    assert "| method | seeds | 10 | 20 | 30 | 40 |" in md  # every recorded size
    assert "| Margin" not in md and md.endswith("Not finished yet, left out of this table (1): Margin/seed0.\n")
    assert "Margin" not in (hand_runs / "table.csv").read_text()
    assert "| Entropy | 2 | 40.00 ± 14.14 | 50.00 ± 14.14 | – | 80.00 (n=1) |" in md
    rows = {r["method"]: r for r in read_csv(hand_runs / "table.csv")}
    assert rows["Entropy"]["mean@30"] == "" and rows["Entropy"]["n@30"] == "0"
    assert rows["Entropy"]["std@40"] == "" and rows["Entropy"]["n@40"] == "1"
    assert list(rows) == ["LPLgrad", "Entropy", "Random"]  # the presets' order


def test_collect_only_with_nothing_finished(tmp_path, capsys):
    assert main(["--collect-only", "--out", str(tmp_path / "none")]) == 1
    assert "no finished runs" in capsys.readouterr().err


# ---- planning and running ----------------------------------------------------------------------


def test_labels_to_reach_an_accuracy(hand_runs, capsys):
    """LPLgrad's mean curve is 52, 61, 73: 65% first at 30 labels (seed 0 at 30, seed 1 at 30);
    Random's is 42, 53, 60: never (seed 1 reaches 65 at 30, seed 0 never)."""
    rows = {r.method: r for r in reach_table(load_runs(hand_runs), 65.0)}
    assert (rows["LPLgrad"].mean_curve, rows["LPLgrad"].by_seed) == (30, {"seed0": 30, "seed1": 30})
    assert (rows["Random"].mean_curve, rows["Random"].by_seed, rows["Random"].largest) == (
        None,
        {"seed0": None, "seed1": 30},
        30,
    )
    assert reach_table(load_runs(hand_runs), 61.0)[0].mean_curve == 20  # the mean reaches 61.00 at 20
    assert [r.method for r in reach_table(load_runs(hand_runs), 50.0)] == ["LPLgrad", "Random"]  # 10, 20

    assert main(["--collect-only", "--out", str(hand_runs), "--reach", "65"]) == 0
    md = (hand_runs / "reach.md").read_text()
    assert "| LPLgrad | 2 | 30 | seed0: 30, seed1: 30 |" in md
    assert "| Random | 2 | > 30 | seed0: > 30, seed1: 30 |" in md
    csv_rows = read_csv(hand_runs / "reach.csv")
    assert [(r["method"], r["seed"], r["labels"]) for r in csv_rows] == [
        ("LPLgrad", "mean", "30"),
        ("LPLgrad", "seed0", "30"),
        ("LPLgrad", "seed1", "30"),
        ("Random", "mean", ""),
        ("Random", "seed0", ""),
        ("Random", "seed1", "30"),
    ]
    assert json.loads((hand_runs / "report.json").read_text())["reach"] == 65.0
    assert main(["--collect-only", "--out", str(hand_runs)]) == 0  # kept from report.json
    assert (hand_runs / "reach.md").read_text() == md
