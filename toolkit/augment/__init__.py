"""Speech augmentation: transforms that move (synthetic) speech toward the variety of real speakers, rooms,
noises and channels, offline or on the fly in the speech data loader.

    toolkit.augment.voice     WORLD voice changes: F0 ratio and range, vocal-tract length, breathiness, rate, jitter
    toolkit.augment.room      shoebox rooms at a target RT60 (pyroomacoustics image sources + a seeded tail)
    toolkit.augment.noise     coloured noise, mains hum, babble of other utterances, at a target SNR
    toolkit.augment.channel   microphone EQ, telephone lines (G.711, GSM, AMR), mp3 / opus, gain, clipping
    toolkit.augment.codec     the codec round trips (PyAV, in memory)
    toolkit.augment.pipeline  SpeechAugmentConfig, AugmentPlan and the seeded SpeechAugmenter
    toolkit.augment.offline   an augmented copy of a corpus on disk

On the fly: `SpeechDataset(records, tokenizer, augment=SpeechAugmentConfig(), augment_seed=0)`, or `data.augment`
in an ASR recipe's YAML (`toolkit.tasks.asr.SpeechDataConfig`). Cost per transform: tests/benchmarks/augment_cost.py.
The synthetic corpus's own augmentation (`toolkit.synth.augment`) is separate and unchanged.
"""

from toolkit.augment.channel import ChannelChoice, ChannelConfig
from toolkit.augment.noise import ArrayBabble, BabbleSource, FileBabble, NoiseChoice, NoiseConfig
from toolkit.augment.pipeline import AugmentPlan, SpeechAugmentConfig, SpeechAugmenter
from toolkit.augment.room import Room, RoomConfig
from toolkit.augment.voice import VoiceChange, VoiceConfig

__all__ = ["ArrayBabble", "AugmentPlan", "BabbleSource", "ChannelChoice", "ChannelConfig", "FileBabble",
           "NoiseChoice", "NoiseConfig", "Room", "RoomConfig", "SpeechAugmentConfig", "SpeechAugmenter",
           "VoiceChange", "VoiceConfig"]
