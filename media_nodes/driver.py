"""How the control plane talks to a media node: a small interface, and its LiveKit
implementation on the official ``livekit-api`` SDK (Twirp RoomService).

Another SFU would add a driver here; the rest of the code only sees ``NodeDriver``.
Calls are synchronous for callers (Celery tasks, views) and bounded by a timeout;
every failure becomes ``NodeUnreachable`` or ``NodeRefused`` and never carries the
node's secret.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from django.conf import settings

from media_nodes.models import MediaNode


@cache
def livekit_sdk():
    """The LiveKit server SDK and its HTTP client (aiohttp), imported at the first call
    to a node: about half a second that every ``manage.py`` command would pay."""
    import aiohttp
    from livekit import api

    return api, aiohttp


class NodeError(Exception):
    """A call to a media node failed."""


class NodeUnreachable(NodeError):
    """The node did not answer in time, or refused the connection."""


class NodeRefused(NodeError):
    """The node answered with an error (bad credentials, unknown room…)."""

    def __init__(self, message: str, *, code: str = "", status: int = 0):
        super().__init__(message)
        self.code, self.status = code, status


@dataclass(frozen=True)
class NodeRoom:
    name: str
    participants: int


class NodeDriver(Protocol):
    def list_rooms(self) -> list[NodeRoom]: ...

    def delete_room(self, name: str) -> None: ...

    def list_participants(self, room: str) -> list[str]: ...


class LiveKitDriver:
    """RoomService of one LiveKit node."""

    def __init__(self, *, url: str, api_key: str, api_secret: str, timeout: float | None = None):
        self.url, self._key, self._secret = url, api_key, api_secret
        self.timeout = timeout or settings.MEDIA_NODE_TIMEOUT_SECONDS

    @classmethod
    def for_node(cls, node: MediaNode, timeout: float | None = None) -> LiveKitDriver:
        return cls(url=node.url, api_key=node.api_key, api_secret=node.api_secret, timeout=timeout)

    def _run(self, call):
        lk, aiohttp = livekit_sdk()

        async def go():
            timeout = aiohttp.ClientTimeout(total=self.timeout, connect=self.timeout)
            client = lk.LiveKitAPI(
                self.url, self._key, self._secret, timeout=timeout, failover=False
            )
            try:
                return await asyncio.wait_for(call(client.room), self.timeout)
            finally:
                await client.aclose()

        try:
            return asyncio.run(go())
        except lk.TwirpError as exc:
            raise NodeRefused(
                f"{exc.code}: {exc.message}", code=exc.code, status=exc.status
            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise NodeUnreachable(f"{type(exc).__name__} calling {self.url}") from None

    def list_rooms(self) -> list[NodeRoom]:
        lk, _aiohttp = livekit_sdk()
        response = self._run(lambda room: room.list_rooms(lk.ListRoomsRequest()))
        return [NodeRoom(r.name, r.num_participants) for r in response.rooms]

    def delete_room(self, name: str) -> None:
        lk, _aiohttp = livekit_sdk()
        try:
            self._run(lambda room: room.delete_room(lk.DeleteRoomRequest(room=name)))
        except NodeRefused as exc:
            if exc.code != "not_found":
                raise

    def list_participants(self, room: str) -> list[str]:
        lk, _aiohttp = livekit_sdk()
        response = self._run(
            lambda svc: svc.list_participants(lk.ListParticipantsRequest(room=room))
        )
        return [p.identity for p in response.participants]


def driver_for(node: MediaNode, timeout: float | None = None) -> NodeDriver:
    return LiveKitDriver.for_node(node, timeout=timeout)
