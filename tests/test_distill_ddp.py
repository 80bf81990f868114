"""The distiller inside torch DDP: 2 CPU processes on the gloo backend stay in sync."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, teacher: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), YOLO_OFFLINE="1")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    from torch.nn.parallel import DistributedDataParallel as DDP
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    from detdistill.distill import build_class_map, load_recipe, load_teacher
    from detdistill.distill.model import KDModel
    from detdistill.distill.students import scaled_model_yaml
    from detdistill.models import class_names

    torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
    t = load_teacher(teacher)
    student = DetectionModel(str(scaled_model_yaml("yolov8", width=0.0625)), nc=80, verbose=False)
    student.args = get_cfg()
    cm = build_class_map(class_names(t), class_names(t))
    recipe = load_recipe({"losses": [{"type": "cwd"}, {"type": "logit"}, {"type": "box"}], "region": "teacher+gt"})
    model = DDP(KDModel(student, t, recipe, cm, {"teacher": teacher}).train(), find_unused_parameters=True)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    g = torch.Generator().manual_seed(100 + rank)  # each rank sees its own data
    for _ in range(2):
        batch = {
            "img": torch.rand(2, 3, 96, 96, generator=g),
            "batch_idx": torch.tensor([0.0, 1.0]),
            "cls": torch.tensor([[0.0], [2.0]]),
            "bboxes": torch.rand(2, 4, generator=g) * 0.3 + 0.3,
        }
        loss, items = model(batch)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    flat = torch.cat([p.detach().flatten() for p in model.module.student_model.parameters()] +
                     [p.detach().flatten() for p in model.module.distiller.parameters()])
    torch.save({"params": flat, "kd": {k: float(v) for k, v in items.items() if k.startswith("kd_")}},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_ddp_gloo_two_processes_stay_in_sync(tmp_path, teacher_pt):
    mp.spawn(_worker, args=(2, _free_port(), str(teacher_pt), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert set(r0["kd"]) == {"kd_cwd", "kd_logit", "kd_box"} and all(v > 0 for v in r0["kd"].values())
    assert r0["kd"] != r1["kd"]  # the ranks saw different data...
    assert torch.allclose(r0["params"], r1["params"], atol=1e-6)  # ...yet their weights (adapters too) agree
