"""Corpus generation (`toolkit synth shapes|speech|longform`): captioned images of coloured shapes (`shapes`), a
speech corpus spoken by synthetic voices (`speech`, with `voices`, `augment`, `text_corpus`, `text_normalize`), and
long recordings with a known timeline (`longform`). Reading what they write is `toolkit.data`'s job."""
