"""rosbags' bag `Writer` whose MCAP channels carry the type hash that rosbag2 reads.

rosbag2's MCAP storage stores two channel metadata entries, `offered_qos_profiles` and
`topic_type_hash` (the type's RIHS01 hash, "RIHS01_<64 hex>"), and its reader fills the topic's
type description hash from the latter. rosbags (0.11) writes only the first (the hash goes to
metadata.yaml alone), so `ros2 bag` reported empty hashes for our bags. `BagWriter` is
rosbags' `Writer` with an MCAP storage that writes both; SQLite3 storage is unchanged (it keeps
the hash in its topics table already).
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from types import MappingProxyType
from typing import Any, ClassVar

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import Channel, McapWriter, write_channel, write_string

TYPE_HASH_KEY = "topic_type_hash"
QOS_KEY = "offered_qos_profiles"


class _McapStorage(McapWriter):
    """rosbags' MCAP storage writer; channels also get `topic_type_hash`."""

    def add_connection(self, connection: Any, offered_qos_profiles: str) -> None:
        metadata = BytesIO()
        for key, value in ((QOS_KEY, offered_qos_profiles), (TYPE_HASH_KEY, connection.digest)):
            write_string(metadata, key)
            write_string(metadata, value)
        self.channels.append(Channel(connection.id, connection.msgtype, connection.topic,
                                     connection.ext.serialization_format, metadata.getvalue()))
        self.channel_stats[connection.id] = 0
        write_channel(self.chunk.bio, self.channels[-1], self.schemas)


class BagWriter(Writer):
    """`rosbags.rosbag2.Writer` with MCAP channels as rosbag2 writes them."""

    STORAGE_PLUGINS: ClassVar[Mapping[StoragePlugin, type]] = MappingProxyType(
        {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _McapStorage})
