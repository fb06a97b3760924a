import pytest

import snapstore


@pytest.fixture
def repo(tmp_path):
    with snapstore.Repo.init(tmp_path / "repo") as r:
        yield r
