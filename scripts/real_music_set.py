#!/usr/bin/env python3
"""A small set of real music recordings, cut from Debian packages: three styles, tracks split by
fold. Nothing of it enters the repository; this script fetches and cuts it.

    python3 scripts/real_music_set.py --output_dir=DIR [--clips_per_track=8]

needs apt (Debian's package archive): `apt-get download` fetches the packages into
DIR/packages, `dpkg-deb -x` unpacks them, and each track gives clips_per_track 3-s clips, evenly
spaced between 10% and 90% of it, resampled to 32 kHz mono, as DIR/audio/<style>/<track>_<k>.wav
(the GTZAN layout). DIR/folds.csv deals each style's tracks over the ten folds (every clip of a
track in its track's fold, so no track is on both sides of a split), for
`utils/features.py pack_audio_files_to_hdf5 --dataset_dir=DIR/audio --folds_from=DIR/folds.csv`.

The styles and their sources (each package's copyright file gives the licence: GPL-2+ or
CC BY-SA, redistributable):
  orchestral  wesnoth-1.16-music   the Battle for Wesnoth soundtrack
  electronic  warzone2100-music    the Warzone 2100 soundtrack
  game_themes hedgewars-data       the Hedgewars themes (Data/Music)
"""
import glob
import os
import subprocess
import sys

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import soundfile
import soxr

from scripts.demo.mixing import write_wav
from utils.arguments import Parser, positive_int
from utils.utilities import UsageError, atomic_write_text, create_folder, run_cli

SAMPLE_RATE, SECONDS, FOLDS = 32000, 3.0, 10
STYLES = {  # style -> (Debian package, glob of its tracks under the unpacked tree)
    "orchestral": ("wesnoth-1.16-music", "usr/share/games/wesnoth/*/data/core/music/*.ogg"),
    "electronic": ("warzone2100-music", "usr/share/games/warzone2100/music/**/*.opus"),
    "game_themes": ("hedgewars-data", "usr/share/games/hedgewars/Data/Music/*.ogg"),
}


def unpack(package, folder):
    """The package's files under folder/<package> (downloaded once)."""
    tree = os.path.join(folder, package)
    if not os.path.isdir(tree):
        subprocess.run(["apt-get", "download", package], cwd=folder, check=True,
                       capture_output=True)
        [deb] = glob.glob(os.path.join(folder, f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", deb, tree], check=True)
    return tree


def track_clips(path, clips_per_track):
    """clips_per_track 3-s clips of one track at 32 kHz mono (fewer if the track is short)."""
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    audio = soxr.resample(audio.mean(axis=1), rate, SAMPLE_RATE, quality="VHQ")
    length = int(SECONDS * SAMPLE_RATE)
    if len(audio) < 2 * length:
        return []
    starts = np.linspace(0.1 * len(audio), 0.9 * len(audio) - length, clips_per_track)
    return [audio[int(start):int(start) + length] for start in starts]


def make_real_music_set(output_dir, clips_per_track=8):
    packages = create_folder(os.path.join(output_dir, "packages"))
    rows = []
    for style, (package, pattern) in STYLES.items():
        tracks = sorted(glob.glob(os.path.join(unpack(package, packages), pattern),
                                  recursive=True))
        if not tracks:
            raise UsageError(f"{package}: no tracks match {pattern}")
        for number, track in enumerate(tracks):
            # numbered: two albums of one package may both hold a track03
            name = f"{number:03d}_{os.path.splitext(os.path.basename(track))[0]}"
            for index, clip in enumerate(track_clips(track, clips_per_track)):
                file_name = f"{name}_{index}.wav"
                write_wav(os.path.join(output_dir, "audio", style, file_name), clip, SAMPLE_RATE)
                rows.append(f"{style}/{file_name},{number % FOLDS + 1}\n")
        print(f"{style}: {len(tracks)} tracks of {package}", flush=True)
    atomic_write_text("".join(rows), os.path.join(output_dir, "folds.csv"))
    return len(rows)


def main():
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--clips_per_track", type=positive_int, default=8)
    args = parser.parse_args()
    clips = make_real_music_set(args.output_dir, args.clips_per_track)
    print(f"wrote {clips} clips and {os.path.join(args.output_dir, 'folds.csv')}")


if __name__ == "__main__":
    run_cli(main)
