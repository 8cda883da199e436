"""pyconvnet: fast convolutional-network kernels (C++/OpenMP/OpenBLAS) behind a NumPy API."""
from ._random import manual_seed
from ._threads import get_num_threads, set_num_threads
from ._cpu import cpu_info

__version__ = "0.1.0"
__all__ = ["get_num_threads", "set_num_threads", "cpu_info", "manual_seed", "__version__"]
