"""Built-in zoocompat plugins; each module registers through the `zoocompat` entry-point group."""
