"""Speech augmentation: transforms that move (synthetic) speech toward the variety of real speakers, rooms,
noises and channels, offline or on the fly in the speech data loader."""
