"""The ``tickline`` command line: serve, demo, bench, replay, journal, loadgen.

Each command imports its implementation lazily so that ``tickline --help`` stays instant and
one subsystem's dependencies never slow another's start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="tickline: a real-time event engine and a working exchange built on it.",
    no_args_is_help=True,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks: print throughput and latency percentiles, write JSON.",
                        no_args_is_help=True)
journal_app = typer.Typer(help="Operate on a journal directory: verify, dump.",
                          no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(journal_app, name="journal")

JsonOption = Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")]


# --- bench matching (issue 2) -------------------------------------------------------------

@bench_app.command("matching")
def bench_matching(
    commands: Annotated[int, typer.Option(help="Commands to run (after warm-up).")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Workload generator seed.")] = 1,
    symbols: Annotated[int, typer.Option(help="Symbols the mix is spread over.")] = 1,
    seed_port: Annotated[bool, typer.Option(
        help="Also run the straight port of the seed's order book for the ratio.")] = True,
    json_path: JsonOption = None,
) -> None:
    """Run the exchange-core mix through the matching engine (and the seed's port)."""
    from tickline.bench.matching import run

    run(commands=commands, seed=seed, symbols=symbols, with_seed_port=seed_port,
        json_path=json_path)


# --- (other subsystems register their commands below) --------------------------------------


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
