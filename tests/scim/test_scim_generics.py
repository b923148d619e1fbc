"""The scim2-models generics the endpoints parametrize are built once per process."""

import gc
from typing import Union

from pydantic._internal import _generics
from scim2_models import PatchOp, ResponseParameters, SearchRequest

from scim.views import GROUP, USER


def test_parametrized_generics_survive_garbage_collection(monkeypatch):
    """After a collection, SearchRequest/PatchOp/ResponseParameters of Users and Groups
    (and the root search's union) come from pydantic's cache: no class is built again
    (pydantic keeps them only weakly; a rebuild cost about 18 ms per request)."""
    built = []
    original = _generics.create_generic_submodel
    monkeypatch.setattr(
        _generics,
        "create_generic_submodel",
        lambda *args, **kwargs: built.append(args[0]) or original(*args, **kwargs),
    )
    gc.collect()
    for model in (USER.model, GROUP.model):
        for generic in (SearchRequest, PatchOp, ResponseParameters):
            assert generic[model] is not None
    assert SearchRequest[Union[USER.model, GROUP.model]] is not None  # noqa: UP007
    assert built == []
