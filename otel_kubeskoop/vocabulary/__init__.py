# SPDX-License-Identifier: Apache-2.0
"""The shared vocabulary: instrument, event and attribute types and the keys many probes use.

The bottom of the house: every other package may import it, and it imports nothing of ours.
"""
