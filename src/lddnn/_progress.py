"""A terminal progress bar for `lddnn.train.train`, for the command line's use.

The library never prints; the command line passes the callback built here as
`train(..., progress=callback)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextlib.contextmanager
def progress_bar(
    total_steps: int,
    *,
    description: str = "training",
    console: Console | None = None,
    start_step: int = 0,
) -> Iterator[Callable[[int, dict], None]]:
    """A rich progress bar showing steps, loss, validation loss, rate and ETA.

    Yields the `progress(step, metrics)` callback for `train`; the bar is shown
    while the context is open. `start_step` places the bar of a resumed run.

    Example:
        >>> with progress_bar(1000) as progress:  # doctest: +SKIP
        ...     result = train(model, samples, config, progress=progress)
    """
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[validation]}"),
        TextColumn("{task.fields[rate]} steps/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    fields = {"loss": "–", "validation": "", "rate": "–"}
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(
            description, total=total_steps, completed=start_step, **fields
        )

        def update(step: int, metrics: dict) -> None:
            shown = {
                "loss": f"{metrics['loss']:.3e}",
                "rate": f"{metrics['steps_per_second']:.0f}",
            }
            if "validation_loss" in metrics:
                shown["validation"] = f"val {metrics['validation_loss']:.3e}"
            bar.update(task, completed=step, **shown)

        yield update
