"""Operator commands on a journal directory: ``tickline replay``, ``tickline journal verify``
and ``tickline journal dump``. Each returns the process exit code; :mod:`tickline.cli` only
parses arguments and calls them."""

from __future__ import annotations

from pathlib import Path

import msgspec
from rich.console import Console
from rich.table import Table

from tickline.journal.format import RECORD_COMMAND, JournalCorruptError, JournalError
from tickline.journal.recovery import (
    compare_replays,
    iter_records,
    replay,
    verify,
)
from tickline.matching import Command, MatchingEngine, OrderBook

_decoder = msgspec.msgpack.Decoder(Command)


def depth_table(book: OrderBook, levels: int = 10) -> Table:
    """A depth ladder of ``book``: bids on the left, asks on the right, best first."""
    inst = book.instrument
    depth = book.depth(levels)
    status = " (HALTED)" if book.halted else ""
    table = Table(title=f"{book.symbol}{status}", title_justify="left")
    for name, style in (("orders", "green"), ("bid qty", "green"), ("bid", "bold green"),
                        ("ask", "bold red"), ("ask qty", "red"), ("orders", "red")):
        table.add_column(name, justify="right", style=style)
    bids, asks = depth["bids"], depth["asks"]
    for i in range(max(len(bids), len(asks))):
        row: list[str] = []
        if i < len(bids):
            price, qty, count = bids[i]
            row += [str(count), inst.qty_to_str(qty), inst.price_to_str(price)]
        else:
            row += ["", "", ""]
        if i < len(asks):
            price, qty, count = asks[i]
            row += [inst.price_to_str(price), inst.qty_to_str(qty), str(count)]
        else:
            row += ["", "", ""]
        table.add_row(*row)
    return table


def _print_books(console: Console, engine: MatchingEngine, symbol: str | None,
                 levels: int) -> None:
    symbols = [symbol] if symbol else sorted(engine.books)
    for sym in symbols:
        console.print(depth_table(engine.book(sym), levels))


def run_replay(directory: Path, *, to_seq: int | None = None, symbol: str | None = None,
               json_path: Path | None = None, compare: Path | None = None, levels: int = 10,
               use_snapshot: bool = True, console: Console | None = None) -> int:
    """Rebuild the state of ``directory`` (up to ``to_seq``), print the book(s) and the
    digest, optionally write JSON; with ``compare``, replay both journals event by event
    and report the first divergence (exit code 1 if they diverge)."""
    console = console or Console()
    try:
        if compare is not None:
            return _run_compare(console, directory, compare, to_seq, json_path)
        engine, report = replay(directory, to_seq=to_seq, use_snapshot=use_snapshot)
    except (JournalError, JournalCorruptError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    if symbol is not None and symbol not in engine.books:
        console.print(f"[red]error:[/red] unknown symbol {symbol!r}; the journal has "
                      f"{', '.join(sorted(engine.books))}")
        return 2
    _print_books(console, engine, symbol, levels)
    source = (f"snapshot at seq {report.snapshot_seq} + {report.records_replayed} records"
              if report.snapshot_path else f"{report.records_replayed} records, no snapshot")
    console.print(f"last sequence [bold]{engine.last_seq}[/bold]  ({source}, "
                  f"{report.seconds:.3f} s)")
    console.print(f"digest [bold]{engine.digest()}[/bold]")
    if report.truncation_reason:
        console.print(f"[yellow]warning:[/yellow] replay stopped early: "
                      f"{report.truncation_reason}")
    if json_path is not None:
        books = {}
        for sym in ([symbol] if symbol else sorted(engine.books)):
            book = engine.book(sym)
            books[sym] = {"halted": book.halted, **book.depth(levels)}
        doc = {
            "last_sequence": engine.last_seq, "digest": engine.digest(),
            "records_replayed": report.records_replayed,
            "snapshot_seq": report.snapshot_seq, "seconds": report.seconds,
            "live_orders": len(engine.orders), "books": books,
            "stopped_early": report.truncation_reason,
        }
        json_path.write_bytes(msgspec.json.format(msgspec.json.encode(doc)) + b"\n")
    return 0


def _run_compare(console: Console, left: Path, right: Path, to_seq: int | None,
                 json_path: Path | None) -> int:
    div, agreed, dl, dr = compare_replays(left, right, to_seq=to_seq)
    if json_path is not None:
        doc = {"diverged": div is not None, "commands_agreed": agreed, "digest_left": dl,
               "digest_right": dr,
               "divergence": msgspec.to_builtins(div) if div is not None else None}
        json_path.write_bytes(msgspec.json.format(msgspec.json.encode(doc)) + b"\n")
    if div is None:
        console.print(f"[green]identical[/green]: {agreed} commands, same events; "
                      f"digest {dl}")
        return 0
    console.print(f"[red]diverged[/red] after {agreed} identical commands, at seq {div.seq}: "
                  f"{div.reason}")
    console.print(f"  {left}: {div.left}")
    console.print(f"  {right}: {div.right}")
    return 1


def run_verify(directory: Path, *, console: Console | None = None) -> int:
    """Check every segment and snapshot; print each problem (file and offset); exit code 1 if
    any corruption was found."""
    console = console or Console()
    report = verify(directory)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    for problem in report.problems:
        console.print(f"[red]CORRUPT:[/red] {problem}", soft_wrap=True)
    summary = (f"{report.segments} segments, {report.records} records (last seq "
               f"{report.last_seq}), {report.snapshots} snapshots")
    if report.ok:
        console.print(f"[green]OK[/green]: {summary}")
        return 0
    console.print(f"[red]{len(report.problems)} problem(s)[/red]: {summary}")
    return 1


def run_dump(directory: Path, *, from_seq: int = 0, limit: int | None = 100,
             as_json: bool = False, console: Console | None = None) -> int:
    """Print records from ``from_seq`` on (at most ``limit``): seq, type, file:offset and
    the decoded command."""
    console = console or Console(soft_wrap=True)
    shown = 0
    try:
        for rec in iter_records(directory, from_seq, strict=True):
            if limit is not None and shown >= limit:
                break
            if rec.type == RECORD_COMMAND:
                cmd = _decoder.decode(rec.payload)
                body = msgspec.json.encode(cmd).decode() if as_json else repr(cmd)
            else:
                body = f"<{len(rec.payload)} bytes> {rec.payload[:32].hex()}"
            if as_json:
                console.out(msgspec.json.encode({
                    "seq": rec.seq, "type": rec.type, "segment": rec.segment.name,
                    "offset": rec.offset, "record": msgspec.json.decode(body)
                    if rec.type == RECORD_COMMAND else body}).decode(), highlight=False)
            else:
                console.out(f"{rec.seq:>12} t={rec.type:<3} {rec.segment.name}:{rec.offset:<10} "
                            f"{body}", highlight=False)
            shown += 1
    except JournalCorruptError as exc:
        console.print(f"[red]CORRUPT:[/red] {exc}")
        return 1
    except JournalError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    return 0
