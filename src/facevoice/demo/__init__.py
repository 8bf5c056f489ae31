"""The demo corpus builder: real faces and voices from registry packages, rendered into the
VoxCeleb1 layout. May import any layer below the command line."""
