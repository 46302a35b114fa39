"""Preemption and time limits under submitit (hydra/launcher=slurm|slurm_multigpu|
local_submitit): keep the training checkpoint, requeue, resume.

submitit installs a handler for its signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL says
otherwise), which SLURM sends on preemption and `signal_delay_s` before the time limit: it
asks the launcher for a checkpoint (the launcher resubmits the same member), requeues the
job and exits. Arriving in the middle of training, that would lose every optimizer step
since the last periodic checkpoint. While a step trains, `deferred_preemption` holds the
signal back: the trainer finishes the update it is in, saves a checkpoint (every rank, at
the same step), and only then does submitit requeue. The requeued member reuses every
committed step, resumes training from that checkpoint (`resume=auto`) and logs into the same
W&B run (run ids are keyed by the step). Outside submitit nothing changes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)


class Pending:
    """The signal submitit's handler is waiting to receive (one per process)."""

    handler: Callable[..., Any] | None = None
    signum: int | None = None
    frame: Any = None
    requested: bool = False


def submitit_signal() -> int | None:
    """The preemption signal when this process is a submitit job, else None."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


@contextmanager
def deferred_preemption() -> Iterator[bool]:
    """While training: hold submitit's preemption signal until the next checkpoint is saved
    (PreemptionCallback); yields whether a handler was deferred."""
    signum = submitit_signal()
    previous = signal.getsignal(signum) if signum is not None else None
    if not callable(previous):
        yield False
        return

    def hold(received: int, frame: Any) -> None:
        log.warning("preemption signal: saving a checkpoint at the end of this training step")
        Pending.signum, Pending.frame, Pending.requested = received, frame, True

    Pending.handler, Pending.requested = previous, False
    signal.signal(signum, hold)
    try:
        yield True
    finally:
        signal.signal(signum, previous)
        if Pending.requested:  # training finished first: commit the step, then requeue
            log.warning("preemption signal during the last step: requeue once it is committed")


def honour_pending() -> None:
    """After a step is committed: requeue if a preemption signal arrived as training ended."""
    if Pending.requested:
        requeue()


def requested_on_any_rank() -> bool:
    """Whether any rank received the signal (they must all save at the same step)."""
    from specalign.pipeline import distributed

    if distributed.world_size() == 1:
        return Pending.requested
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1.0 if Pending.requested else 0.0])
    if torch.cuda.is_available() and dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    Pending.requested = bool(flag.item())
    return Pending.requested


def requeue() -> None:
    """Hand the signal to submitit now: it requeues the member and exits (rank 0); the other
    ranks leave too, their job being requeued with it."""
    handler, signum, frame = Pending.handler, Pending.signum, Pending.frame
    Pending.requested = False
    log.warning("checkpoint kept; handing over to submitit to requeue this member")
    if handler is not None:
        handler(signum or signal.SIGUSR2, frame)
    sys.exit(0)  # a non-zero rank, whose submitit handler only returns


def preemption_callback() -> Any:
    """A transformers TrainerCallback: on a pending preemption, save and stop after the
    current optimizer step, then requeue (transformers is imported only when training)."""
    from transformers import TrainerCallback

    class PreemptionCallback(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if requested_on_any_rank():
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if Pending.requested:
                log.warning("checkpoint-%d saved after the preemption signal", state.global_step)
                requeue()
            return control

    return PreemptionCallback()
