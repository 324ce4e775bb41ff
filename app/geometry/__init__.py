"""What the 68 points say about a face: head pose, eye and mouth openness, blinks.

``pose`` (PnP against the 3D mean face), ``openness`` (eye aspect ratios, mouth opening),
``blinks`` (an online blink detector) each do one job; ``face.FaceGeometryTracker`` puts them
together per face track and is what ``app.pipeline`` runs. Run-time code: numpy and OpenCV only.
"""
