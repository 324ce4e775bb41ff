"""The Qt desktop application: a thin window over the headless ``TrackingSession``.

``worker.TrackingWorker`` (a QThread) owns the source and the session; the window only
sends it requests and paints what it emits. Nothing here is imported by the command line.
"""
