"""The LightningModule around SnapNet: BCE loss, SpecAugment in training, torchmetrics per stage.

Imported only by training code (it imports Lightning)."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score, BinaryPrecision, BinaryRecall

from trainer.augment import spec_augment
from trainer.model import SnapNet


def _metrics(prefix: str) -> MetricCollection:
    return MetricCollection({"accuracy": BinaryAccuracy(), "precision": BinaryPrecision(),
                             "recall": BinaryRecall(), "f1": BinaryF1Score(), "auroc": BinaryAUROC()},
                            prefix=prefix)


class SnapLightning(L.LightningModule):
    def __init__(self, net: SnapNet, lr: float = 2e-3, weight_decay: float = 1e-4, max_epochs: int = 30,
                 spec_augment: bool = True, pos_weight: float = 1.0):
        super().__init__()
        self.net = net
        self.save_hyperparameters(ignore=["net"])
        self.hparams["model_config"] = net.cfg.to_dict()
        self.loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
        # one metric object per stage: their states must never mix
        self.train_metrics = _metrics("train_")
        self.val_metrics = _metrics("val_")
        self.test_metrics = _metrics("test_")
        self.history: list[dict[str, float]] = []  # per-epoch metrics (train and val), for the report

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, stage: str, metrics: MetricCollection) -> torch.Tensor:
        x, y = batch
        spec = self.net.features(x)
        if stage == "train" and self.hparams.spec_augment:
            spec = spec_augment(spec)
        logits = self.net.logits(spec)
        loss = self.loss(logits, y.float())
        metrics.update(torch.sigmoid(logits.detach()), y.int())
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "test",
                 batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train", self.train_metrics)

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val", self.val_metrics)

    def test_step(self, batch, batch_idx):
        self._step(batch, "test", self.test_metrics)

    def _log_epoch(self, metrics: MetricCollection) -> None:
        values = metrics.compute()
        self.log_dict(values, prog_bar=False)
        metrics.reset()

    def on_train_epoch_start(self) -> None:
        ds = getattr(self.trainer.train_dataloader, "dataset", None)
        if ds is not None and hasattr(ds, "epoch"):
            ds.epoch = self.current_epoch  # fresh, reproducible windows every epoch

    def on_train_epoch_end(self) -> None:
        self._log_epoch(self.train_metrics)
        # runs after this epoch's validation and after the train metrics above: a complete record
        if not self.trainer.sanity_checking:
            m = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
            m["epoch"] = self.current_epoch
            self.history.append(m)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.hparams.max_epochs))
        return {"optimizer": opt, "lr_scheduler": sched}
