"""DistributedDataParallel with two processes (gloo over 127.0.0.1): the
gradients of one step equal a single process's over the whole batch."""
import datetime
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import polyattn
from conftest import rel_err

WORLD, BATCH, N, DIM = 2, 4, 9, 16
TIMEOUT = 240       # seconds for the whole two-process step


def make_model():
    torch.manual_seed(7)
    return torch.nn.Sequential(
        polyattn.PolyAttention(DIM, heads=2, poly="x1*x2 + x2*x3", values="x3"),
        torch.nn.Linear(DIM, DIM))


def make_data():
    g = torch.Generator().manual_seed(11)
    return torch.randn(BATCH, N, DIM, generator=g), torch.randn(BATCH, N, DIM, generator=g)


def step(model, x, y):
    """One loss.backward(); the parameters' gradients."""
    torch.nn.functional.mse_loss(model(x), y).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def worker(rank, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=TIMEOUT // 2))
    try:
        model = DistributedDataParallel(make_model())
        x, y = make_data()
        grads = step(model, x.chunk(WORLD)[rank], y.chunk(WORLD)[rank])
        torch.save(grads, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_one(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    make_model()                         # compile once, so the workers hit the cache
    ctx = mp.start_processes(worker, args=(free_port(), str(tmp_path)),
                             nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT
    try:
        while not ctx.join(timeout=5):
            assert time.monotonic() < deadline, "the DDP step did not finish in time"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    single = step(make_model(), *make_data())
    for rank in range(WORLD):
        ddp = torch.load(tmp_path / f"rank{rank}.pt")
        assert len(ddp) == len(single)
        for a, b in zip(ddp, single):
            assert rel_err(a, b) < 1e-6
