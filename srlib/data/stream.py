"""An endless, seeded training stream whose k-th sample depends only on (seed, k).

Epoch ``e`` visits the dataset in ``randperm(n)`` drawn from a generator seeded with (seed, e), and the
augmentation of sample ``k`` runs under a torch RNG seeded with (seed, k). A resumed run that restarts the
stream at ``k = iteration * batch_size`` therefore sees exactly the batches an uninterrupted run would,
whatever the number of data-loader workers.
"""

import torch
from torch.utils.data import Dataset

_SEED_STRIDE = 1_000_003  # keeps (seed, epoch) and (seed, k) streams apart for different seeds


class TrainStream(Dataset):
    """Index ``k`` (0, 1, 2, ...) -> the k-th training sample of the stream."""

    def __init__(self, dataset: Dataset, seed: int):
        if len(dataset) == 0:
            raise ValueError("the training split is empty")
        self.dataset = dataset
        self.seed = seed
        self._epoch, self._order = -1, None

    def _index(self, k: int) -> int:
        epoch, position = divmod(k, len(self.dataset))
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * _SEED_STRIDE + epoch)
            self._epoch, self._order = epoch, torch.randperm(len(self.dataset), generator=generator)
        return int(self._order[position])

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, k: int):
        index = self._index(k)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * _SEED_STRIDE + k) % 2**63)
            return self.dataset[index]
