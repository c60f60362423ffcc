"""Pure codecs of bootree: bytes in, typed values out.

Layer: format, the bottom. Modules here never touch the filesystem or the network and import
nothing from bootree but :mod:`bootree.errors`.
"""
