"""Cooperative control: devices that jointly drive one system learn to share it, each alone.

After Köpf, Tesfazgi, Flad and Hohmann, "Deep Decentralized Reinforcement Learning for
Cooperative Control" (arXiv 1910.13196): a deep Q-network per device with Temporal Experience
Replay, Imagined Experience Replay and Impact Q-Learning (:mod:`.core`, :mod:`.replay`,
:mod:`.imagine`), configured by :mod:`.config` (which imports no torch).
"""
