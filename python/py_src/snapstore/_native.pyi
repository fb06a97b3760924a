"""Type stubs of the Rust extension module. Private: use ``snapstore.Repo``."""

from typing import Any, Callable, Dict, List, Optional, Tuple

# name, safetensors dtype, shape, owner of the bytes, address of the first byte, byte length
RawTensor = Tuple[str, str, List[int], Any, int, int]
# name, safetensors dtype, shape, bytes (a Buffer, or a bytearray for evaluator candidates)
OutTensor = Tuple[str, str, List[int], Any]

DTYPES: List[str]
FORMAT_VERSION: int

class Buffer:
    """Checked-out tensor bytes owned by Rust, viewed by numpy through the array interface."""

    def __len__(self) -> int: ...
    @property
    def __array_interface__(self) -> Dict[str, Any]: ...

class Repo:
    @staticmethod
    def open(
        path: str,
        create: bool = False,
        tip_cache_bytes: Optional[int] = None,
        checkout_cache_bytes: Optional[int] = None,
    ) -> Repo: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def path(self) -> str: ...
    def commit(
        self,
        tensors: List[RawTensor],
        metadata: Optional[Dict[str, str]],
        message: str,
        bound: Optional[str],
        meta: Dict[str, str],
        branch: Optional[str],
    ) -> str: ...
    def commit_auto(
        self,
        tensors: List[RawTensor],
        metadata: Optional[Dict[str, str]],
        message: str,
        meta: Dict[str, str],
        branch: Optional[str],
        evaluate: Any,
        settings: Tuple[float, float, Optional[List[float]], Optional[int]],
    ) -> str: ...
    def search(
        self,
        tensors: List[RawTensor],
        evaluate: Any,
        max_loss: float,
        alpha: float,
        bounds: Optional[List[float]],
        parent: Optional[str],
    ) -> str: ...
    def commit_path(
        self,
        path: str,
        message: str,
        bound: Optional[str],
        meta: Dict[str, str],
        branch: Optional[str],
        kind: str,
    ) -> str: ...
    def commit_path_auto(
        self,
        path: str,
        message: str,
        meta: Dict[str, str],
        branch: Optional[str],
        kind: str,
        evaluate: Any,
        settings: Tuple[float, float, Optional[List[float]], Optional[int]],
    ) -> str: ...
    def checkout_to(self, spec: str, path: str, names: Optional[List[str]] = None) -> str: ...
    def checkout(
        self, spec: str, names: Optional[List[str]] = None
    ) -> Tuple[str, Optional[Dict[str, str]], Dict[str, str], List[OutTensor]]: ...
    def tensor_names(self, spec: str) -> Tuple[str, List[str]]: ...
    def checkout_into(
        self, spec: str, targets: List[RawTensor]
    ) -> Tuple[str, Optional[Dict[str, str]], Dict[str, str]]: ...
    def log(self, spec: Optional[str] = None, limit: Optional[int] = None) -> str: ...
    def show(self, spec: str) -> str: ...
    def diff(self, a: str, b: str) -> str: ...
    def stats(self) -> str: ...
    def gc(self, dry_run: bool, grace_s: int) -> str: ...
    def fsck(self, quick: bool) -> str: ...
    def list_refs(self) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]: ...
    def create_tag(self, name: str, spec: str) -> str: ...
    def create_branch(self, name: str, spec: Optional[str] = None) -> Optional[str]: ...
    def delete_ref(self, key: str) -> str: ...
    def config(self, key: str, value: Optional[str] = None, branch: Optional[str] = None) -> str: ...
    def head_branch(self) -> str: ...
    def switch_branch(self, branch: str, create: bool) -> None: ...
    def add_remote(
        self, name: str, url: str, endpoint: Optional[str] = None, region: Optional[str] = None
    ) -> str: ...
    def remotes(self) -> str: ...
    def remove_remote(self, name: str) -> str: ...
    def push(self, remote: str, refs: List[str], force: bool, no_rebase: bool) -> str: ...
    def delete_remote_ref(self, remote: str, name: str) -> str: ...
    def remote_fsck(self, remote: str, deep: bool, repair: bool) -> str: ...
    def fetch(self, remote: str, refs: List[str]) -> str: ...
    def pull(self, remote: str, branch: Optional[str] = None) -> str: ...
    @staticmethod
    def clone_remote(
        url: str,
        path: str,
        endpoint: Optional[str] = None,
        region: Optional[str] = None,
        progress: Optional[Callable[[str, int, int], None]] = None,
    ) -> Tuple["Repo", str]: ...

def checkout_remote(
    url: str,
    spec: str,
    path: str,
    names: Optional[List[str]] = None,
    endpoint: Optional[str] = None,
    region: Optional[str] = None,
) -> str: ...

def _stage_profile(reset: bool = False) -> str: ...
def remote_gc(
    url: str,
    dry_run: bool,
    grace_s: int,
    endpoint: Optional[str] = None,
    region: Optional[str] = None,
) -> str: ...
