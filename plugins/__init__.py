"""Built-in zoocompat plugins; each module registers through the `zoocompat` entry-point group."""

from zoocompat_plugins.import_order import install as _install_import_order

_install_import_order()
