"""The embedded demo corpus: real faces and real voices fetched from package registries.
May import any layer below the command line.

VoxCeleb cannot be downloaded here, and no package ships the face and the voice of the same
person. The demo therefore pairs, for every identity, ONE real face source (a photograph
or a video of one person) with ONE real voice source (recorded speech of a *different*
person of the same gender, and of the same nationality where both are known). Every media
file comes from a package fetched with the registry's ordinary client:

* PyPI: ``pip download --no-deps NAME==VERSION`` (wheels and sdists are zip/tar archives),
* Debian: ``apt-get download NAME=VERSION``, unpacked with ``dpkg-deb --fsys-tarfile``,
* npm: ``npm pack NAME@VERSION``.

What is used, and where each label comes from, is written down in
``facevoice/demo/catalog.yaml``: pinned package versions with the sha256 of each
archive and of each file taken from it, face boxes, gender and nationality labels with
their source. Gender always comes from a label (a voice folder name such as
``en_US_f_Allison``, a named speaker, a named public figure, an image we looked at) or, for
unlabelled voices, from an F0 estimate (:func:`.audio.estimate_f0`) that the catalog records as
``f0 estimate (N Hz)``. Age is never labelled.

The corpus is laid out like VoxCeleb (``videos/<idXXXXX>/<video>/<NNNNN>.mp4``, clips numbered
from 1 in each video; ``videos_per_identity`` videos per identity, so that the seen-heard
protocol can hold one out of training) with
``vox1_meta.csv``, ``identity_splits.txt``, ``provenance.csv`` and ``corpus.json``. Each
clip is an H.264 (yuv420p) video at exactly 25 fps, 320x320 px with the face at least
160 px, and a 16 kHz mono AAC track. Clips of one identity carry different speech
(disjoint prompts or disjoint stretches of a recording) and different frames (a slow
pan/zoom and a brightness/gamma change drawn per clip from ``demo.seed``; for video sources
a different time segment). Every clip's first, middle and last frame is checked with
MTCNN: exactly one face with probability >= 0.95, at least 160 px; a face source that fails
is dropped with the reason logged, and the identities are planned again without it.

The build is deterministic (same inputs, byte-identical files) and cached: packages are
downloaded once into the cache folder, and a corpus whose ``corpus.json`` matches the
catalog and parameters, and whose files all verify, is left alone.

The parts, each importing only those above it:

* :mod:`.base`: the errors (``DemoError``, ``VerificationError``), the log, seeded random numbers;
* :mod:`.sources`: the catalog (``load_catalog``), the package clients (``available_clients``),
  downloads into the cache (``fetch_package``), archive members (``extract_files``), licences;
* :mod:`.plan`: pairing faces and voices, identities and splits (``plan_identities``), the
  videos of an identity and the clips of each (``video_id``, ``clip_videos``);
* :mod:`.control`: the positive control (``demo.control``): identities pairing sources at
  random within split pools (``plan_control``) and the attribute planted in both
  (``tint_frames``, ``shift_voice``; README, Positive control);
* :mod:`.audio`: decoding voices, ``estimate_f0``, each clip's speech (``voice_clips``);
* :mod:`.render`: frames, MTCNN checks, encoding, one identity's clips (``render_identity``);
* :mod:`.export`: the tables and ``corpus.json`` (``corpus_up_to_date``, ``read_corpus``),
  ``copy_videos_subset``, ``export_voxceleb1_layout``;
* :mod:`.build`: ``build_demo`` from the complete ``demo:`` section (``demo_settings``),
  ``reproduce_clips``, ``main`` (``facevoice demo``).
"""
