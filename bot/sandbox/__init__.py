"""A local, faithful stand-in for the DingTalk Open Platform subset the bridge uses."""
