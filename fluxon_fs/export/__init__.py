"""The export protocol: operations, wire codec, client, routing, and the serving side."""
