"""The POPGym memory table in one command: ppo_rnn on POPGym's tasks, each memory torso beside its
memoryless twin (mlp), final greedy return per seed.

    python benchmarks/popgym.py                                   # every family at Easy
    python benchmarks/popgym.py --tasks RepeatFirst CountRecall --torsos gru s5 --num-seeds 8
    python benchmarks/popgym.py --difficulty Hard --total-timesteps 10000000   # a GPU run

Each (task, torso) row is one call of ``algorithms.ppo_rnn.run``: --num-seeds seeds in one
compiled run at ppo_rnn's default flags apart from the task, torso and budget, with POPGym's
observation protocol (``--use-prev-action --use-reset-flag``: the previous action and an
episode-start flag, as POPGym's baselines see them), greedy evaluation of 32 episodes five
times along the run (the last one is the row's result). The results folder
(--output, default benchmarks/results/popgym) gets:

- ``returns.csv``: long format, one line per seed (task, difficulty, torso, seed, final greedy
  return, env steps, date, machine); rows from an earlier call stay unless this call re-ran them,
  so a table can be built over several calls. A row already there with the same budget and number
  of seeds is not trained again (so the same command resumes an interrupted table); --rerun
  trains it again;
- ``table.md``: IQM [95% bootstrap CI] per task and torso, and per torso the mean over tasks of
  those IQMs (POPGym scales every task's return to [-1, 1], so tasks weigh the same), the
  machine and the flags;
- ``heatmap.png``: the IQMs, tasks x torsos;
- ``curves/<task>-<torso>.png``: each row's learning curve.

Defaults are sized for a 2-core CPU: Easy, torsos gru s5 lru mamba and mlp, 4 seeds, 500,000 env
steps per seed; a row takes 2 to 6 minutes there (ppo_rnn's default network), a mamba row 9 to
15, so the whole table (every family, 5 torsos) takes about 5 hours: run it in parts with --tasks,
or on a GPU.

--tasks takes our family names or POPGym's (StatelessCartPole is our PositionOnlyCartPole, the
same task); the table names each task by ours.
"""

import argparse
import csv
import dataclasses
import difflib
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from memorax.environments import registered_envs
from memorax.environments.registry import POPGYM_ALIASES
from memorax.networks.torsos import TORSO_NAMES
from memorax.results import atomic_write, write_json
from memorax.statistics import bootstrap_interval, interquartile_mean

REPO = Path(__file__).resolve().parents[1]
DIFFICULTIES = ("Easy", "Medium", "Hard")
TWIN = "mlp"
# POPGym's own baselines (popgym/baselines/ppo.py) wrap every task in PreviousAction and
# Antialias: the policy sees the action it took last and a flag on an episode's first step. The
# bandit, Concentration, Battleship and MineSweeper do not show the action taken otherwise.
PROTOCOL = {"use_prev_action": True, "use_reset_flag": True}
COLUMNS = ("task", "difficulty", "torso", "seed", "final_return", "env_steps", "date", "machine")


def families() -> tuple[str, ...]:
    """POPGym task families that ``make`` builds at every difficulty (``<Family><Difficulty>``)."""
    ids = set(registered_envs()) - set(POPGYM_ALIASES)  # each task once, by popgym's name
    found = {
        env_id[: -len(level)] for env_id in ids for level in DIFFICULTIES if env_id.endswith(level)
    }
    return tuple(sorted(f for f in found if all(f + level in ids for level in DIFFICULTIES)))


def popgym_names() -> dict[str, str]:
    """POPGym's family names that are ours under another name: {POPGym's: ours}."""
    return {alias[: -len("Easy")]: task[: -len("Easy")] for alias, task in POPGYM_ALIASES.items()
            if alias.endswith("Easy")}  # fmt: skip


def _refuse(flag: str, value: str, valid: tuple[str, ...]) -> None:
    close = difflib.get_close_matches(value, valid, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise SystemExit(f"error: {flag} {value!r} is unknown{hint}; valid: {', '.join(valid)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", help="task families (default: every one)")
    parser.add_argument("--difficulty", default="Easy", help="Easy, Medium or Hard")
    parser.add_argument(
        "--torsos", nargs="+", default=["gru", "s5", "lru", "mamba"],
        help=f"memory torsos; {TWIN}, the memoryless twin, is always added",
    )  # fmt: skip
    parser.add_argument("--num-seeds", type=int, default=4)
    parser.add_argument("--total-timesteps", type=int, default=500_000)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "popgym"))
    parser.add_argument(
        "--rerun", action="store_true",
        help="train rows again that returns.csv already holds at this budget and number of seeds",
    )  # fmt: skip
    args = parser.parse_args(argv)
    valid_families = families()
    aliases = popgym_names()
    args.tasks = args.tasks or list(valid_families)
    for task in args.tasks:
        if task not in valid_families and task not in aliases:
            _refuse("--tasks", task, valid_families + tuple(aliases))
    args.tasks = list(dict.fromkeys(aliases.get(task, task) for task in args.tasks))
    if args.difficulty not in DIFFICULTIES:
        _refuse("--difficulty", args.difficulty, DIFFICULTIES)
    for torso in args.torsos:
        if torso not in TORSO_NAMES:
            _refuse("--torsos", torso, TORSO_NAMES)
    args.torsos = [t for t in dict.fromkeys(args.torsos) if t != TWIN] + [TWIN]
    return args


def configs(args: argparse.Namespace) -> dict[tuple[str, str], object]:
    """Every row's PPOConfig, built (and so checked) before anything trains."""
    from algorithms.ppo_rnn import PPOConfig

    rows = {}
    for task in args.tasks:
        for torso in args.torsos:
            flags = dict(
                env_id=task + args.difficulty, torso=torso, num_seeds=args.num_seeds, **PROTOCOL
            )
            try:
                round_steps = PPOConfig(**flags).steps_per_round
                rounds = max(args.total_timesteps // round_steps, 1)
                periods = next(p for p in (5, 4, 3, 2, 1) if rounds % p == 0)
                rows[task, torso] = PPOConfig(
                    **flags, total_timesteps=rounds * round_steps,
                    eval_every=rounds // periods * round_steps,
                )  # fmt: skip
            except ValueError as error:
                raise SystemExit(f"error: {error}") from None
    return rows


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def is_done(rows: list[dict], key: tuple[str, str, str], cfg) -> bool:
    """Whether ``rows`` hold the row ``key`` (task, difficulty, torso) at ``cfg``'s budget, one
    line per seed."""
    done = [r for r in rows if (r["task"], r["difficulty"], r["torso"]) == key]
    return len(done) == cfg.num_seeds and all(
        int(r["env_steps"]) == cfg.total_timesteps for r in done
    )


def write_rows(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buffer.getvalue().encode())


def summarise(
    rows: list[dict],
) -> dict[tuple[str, str, str], tuple[float, float, float, int, int]]:
    """(task, difficulty, torso): (IQM, CI low, CI high, seeds, diverged seeds) of the finite
    final returns; a diverged seed's return is NaN (ppo_rnn leaves it out of its IQM too)."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for row in rows:
        key = (row["task"], row["difficulty"], row["torso"])
        groups.setdefault(key, []).append(float(row["final_return"]))
    out = {}
    for key, values in groups.items():
        finite = np.asarray(values)[np.isfinite(values)]
        diverged = len(values) - finite.size
        if finite.size:
            stats = (interquartile_mean(finite), *bootstrap_interval(finite))
            out[key] = (*stats, len(values), diverged)
        else:
            out[key] = (np.nan, np.nan, np.nan, len(values), diverged)
    return out


def cell(iqm: float, low: float, high: float, seeds: int, diverged: int) -> str:
    """A table cell: IQM [CI] of the seeds that finished, and how many diverged, if any."""
    if diverged == seeds:
        return f"diverged ({seeds} of {seeds} seeds)"
    text = f"{iqm:.2f} [{low:.2f}, {high:.2f}]"
    return f"{text}, {diverged} of {seeds} seeds diverged" if diverged else text


def heatmap_label(iqm: float, low: float, high: float, seeds: int, diverged: int) -> str:
    """A heatmap cell's text: the IQM, and the diverged seeds as the table cell names them."""
    if diverged == seeds:
        return "diverged"
    return f"{iqm:.2f}\n{diverged} of {seeds} diverged" if diverged else f"{iqm:.2f}"


def write_table(output: Path, rows: list[dict], machine: dict) -> None:
    stats = summarise(rows)
    cells = sorted({(task, level) for task, level, _ in stats})
    torsos = sorted({torso for *_, torso in stats}, key=lambda t: (t == TWIN, t))
    lines = [
        "| task | " + " | ".join(torsos) + " |",
        "|---|" + "---|" * len(torsos),
    ]
    iqms = np.full((len(cells), len(torsos)), np.nan)
    labels = [["" for _ in torsos] for _ in cells]  # a row not run stays blank
    for i, (task, level) in enumerate(cells):
        entries = []
        for j, torso in enumerate(torsos):
            if (task, level, torso) not in stats:
                entries.append("")
                continue
            iqms[i, j] = stats[task, level, torso][0]
            entries.append(cell(*stats[task, level, torso]))
            labels[i][j] = heatmap_label(*stats[task, level, torso])
        lines.append(f"| {task}{level} | " + " | ".join(entries) + " |")
    complete = np.isfinite(iqms).all(axis=1)
    means = [
        f"{np.mean(iqms[complete, j]):.2f}" if complete.any() else "" for j in range(len(torsos))
    ]
    lines.append(f"| mean over {int(complete.sum())} tasks | " + " | ".join(means) + " |")
    # A partial table: the tasks the twin ran, over the torsos that ran every one of them too.
    twin_tasks = np.isfinite(iqms[:, torsos.index(TWIN)]) if TWIN in torsos else complete
    full = [np.isfinite(iqms[twin_tasks, j]).all() for j in range(len(torsos))]
    if twin_tasks.sum() > complete.sum() and any(full):
        means = [f"{np.mean(iqms[twin_tasks, j]):.2f}" if ok else "" for j, ok in enumerate(full)]
        lines.append(
            f"| mean over the {int(twin_tasks.sum())} tasks {TWIN} ran | "
            + " | ".join(means) + " |"
        )  # fmt: skip
    seeds = sorted({n for *_, n, _ in stats.values()})
    steps = sorted({int(row["env_steps"]) for row in rows})
    dates = sorted({row["date"] for row in rows})
    machines = sorted({row.get("machine") or "not recorded" for row in rows})
    lines += [
        "",
        "Final greedy return (32 episodes) of ppo_rnn, IQM [95% bootstrap CI] over "
        f"{', '.join(map(str, seeds))} seeds, "
        f"{', '.join(f'{s:,}' for s in steps)} env steps per seed, --use-prev-action "
        "--use-reset-flag (POPGym's protocol), default flags otherwise; "
        f"{TWIN} is the memoryless twin. POPGym scales returns to [-1, 1] (Battleship's "
        "only from above: a policy that never hits returns less than -1); the mean rows "
        "average the IQMs over the tasks every torso ran and, in a partial table, over the "
        "tasks the twin ran, for the torsos that ran each of them. A seed whose run "
        "diverged (NaN or inf) is left out of its cell's IQM and named in the cell; a cell "
        "whose every seed diverged has no IQM and leaves its task out of the first mean row. "
        "Run on "
        f"{', '.join(dates)}; "
        f"{'machines' if len(machines) > 1 else 'machine'}: {'; '.join(machines)}; "
        f"jax {machine['jax']}.",
    ]
    atomic_write(output / "table.md", ("\n".join(lines) + "\n").encode())
    plot_heatmap(output / "heatmap.png", iqms, labels, [t + lv for t, lv in cells], torsos)


def plot_heatmap(
    path: Path, iqms: np.ndarray, labels: list[list[str]], tasks: list[str], torsos: list[str]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(torsos) + 3, 0.45 * len(tasks) + 1.5))
    image = ax.imshow(iqms, vmin=-1, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(torsos)), torsos, rotation=30, ha="right")  # long names overlap level
    ax.set_yticks(range(len(tasks)), tasks)
    for i, row in enumerate(labels):
        for j, label in enumerate(row):
            ax.text(j, i, label, ha="center", va="center", fontsize=7 if "\n" in label else 8)
    fig.colorbar(image, ax=ax, label="final greedy return, IQM over seeds")
    ax.set_title("ppo_rnn on POPGym")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows_to_run = configs(args)
    from algorithms.ppo_rnn import run
    from benchmarks.machine import machine_info

    output = Path(args.output)
    (output / "curves").mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    write_json(output / "machine.json", machine)
    rows = read_rows(output / "returns.csv")
    for number, ((task, torso), cfg) in enumerate(rows_to_run.items(), 1):
        key = (task, args.difficulty, torso)
        if not args.rerun and is_done(rows, key, cfg):
            print(
                f"=== row {number}/{len(rows_to_run)}: {cfg.env_id}, {torso}: already in "
                "returns.csv at this budget (--rerun trains it again)", flush=True,
            )  # fmt: skip
            continue
        print(f"=== row {number}/{len(rows_to_run)}: {cfg.env_id}, {torso}", flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            run_dir, summary = run(dataclasses.replace(cfg, output_dir=scratch))
            shutil.copyfile(
                Path(run_dir) / "learning_curve.png",
                output / "curves" / f"{cfg.env_id}-{torso}.png",
            )
        rows = [r for r in rows if (r["task"], r["difficulty"], r["torso"]) != key]
        date = time.strftime("%Y-%m-%d")
        cpu = f"{machine['cpu']}, {machine['cpu_count']} cores"
        rows += [
            dict(zip(COLUMNS, (*key, seed, value, cfg.total_timesteps, date, cpu), strict=True))
            for seed, value in enumerate(summary["final_eval_return_per_seed"])
        ]
        write_rows(output / "returns.csv", rows)  # after every row: an interrupted table keeps
        write_table(output, rows, machine)  # what it finished
    print(f"table: {output / 'table.md'}", flush=True)


if __name__ == "__main__":
    main()
