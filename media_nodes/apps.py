"""App configuration of media_nodes."""

from django.apps import AppConfig


class MediaNodesConfig(AppConfig):
    """Media nodes (LiveKit SFUs): registry, health, placement."""

    name = "media_nodes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Models are loaded only now: the gauges' module reads them.
        from controlplane.metrics import state_reader_register
        from media_nodes import gauges

        state_reader_register(source="database", reader=gauges.nodes_and_allocations)
        state_reader_register(source="redis", reader=gauges.placement_pending)
