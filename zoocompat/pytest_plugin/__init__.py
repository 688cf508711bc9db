"""The pytest plugin (``pytest11`` entry point ``zoocompat``): options, collection, scheduling, shards."""
