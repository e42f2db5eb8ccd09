"""Wire formats, each in one place: :mod:`.runpod` (RunPod's client API and worker protocol)
and the error table all HTTP routes share (:mod:`.errors`). The service never sees these
shapes: a protocol turns bodies into domain records (:mod:`anypod.jobs`) and back.
"""
