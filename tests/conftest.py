import torch

# CPU results are bitwise repeatable only at a fixed thread count; tests pin it.
torch.set_num_threads(1)
