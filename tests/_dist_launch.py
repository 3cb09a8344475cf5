"""Runs a function on several local processes joined by torch.distributed (gloo, CPU).

Each process calls ``function(rank, world_size, *args)``; results travel back through
files the function writes, so a process that dies leaves the others' results readable.
"""

import datetime
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank, world_size, port, function, args):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        function(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def run_ranks(function, world_size, *args, timeout=120.0):
    """Runs ``function(rank, world_size, *args)`` on ``world_size`` spawned processes and
    returns their exit codes; a process still running after ``timeout`` seconds is
    killed and reported as None."""
    context = mp.get_context("spawn")
    port = free_port()
    processes = [context.Process(target=_entry, args=(rank, world_size, port, function, args))
                 for rank in range(world_size)]
    for process in processes:
        process.start()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    codes = []
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
            codes.append(None)
        else:
            codes.append(process.exitcode)
    return codes
