# SynthScenes class lists (modzoo/datasets/synth/scene.py; tests/datasets/test_synth.py checks
# that they match). Semantic label value = index: 0 sky/wall, 1 ground, 2-11 objects, 12 figure.
synth_object_classes = ('red_sphere', 'blue_box', 'green_cylinder', 'yellow_cone',
                        'purple_capsule', 'orange_box', 'cyan_sphere', 'pink_cylinder',
                        'white_cone', 'brown_capsule')
synth_semantic_classes = ('background', 'ground', 'red_sphere', 'blue_box', 'green_cylinder',
                          'yellow_cone', 'purple_capsule', 'orange_box', 'cyan_sphere',
                          'pink_cylinder', 'white_cone', 'brown_capsule', 'figure')
synth_part_classes = ('background', 'head', 'torso', 'upper_arm', 'lower_arm', 'upper_leg',
                      'lower_leg')
# Object names of COCO categories (ids 1-11), VOC xml and ImageNet folders.
synth_voc_classes = ('red_sphere', 'blue_box', 'green_cylinder', 'yellow_cone',
                     'purple_capsule', 'orange_box', 'cyan_sphere', 'pink_cylinder',
                     'white_cone', 'brown_capsule', 'figure')
