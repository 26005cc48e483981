"""Qt-free core: the event contract, pricing, storage and aggregations."""
