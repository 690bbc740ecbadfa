from setuptools import find_packages, setup

setup(
    name='modzoo',
    version='0.1.0',
    description='A modular multi-task vision model zoo',
    license='Apache-2.0',
    packages=find_packages(include=['modzoo', 'modzoo.*']),
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'mmengine==0.10.7',
        'mmcv-lite==2.2.0',
        'timm>=1.0.9,<2',  # ViT uses VisionTransformer._pos_embed (private)
        'fvcore>=0.1.5.post20221221',
        'pycocotools>=2.0.7',
        'einops>=0.7',
        'filelock>=3.12',
        'huggingface_hub>=0.20',
        'PyYAML>=6.0',
        'safetensors>=0.4',
        'numpy>=1.24',
        'opencv-python-headless>=4.8',
        'matplotlib>=3.7',
        'tqdm>=4.65',
        'scipy>=1.10',
        'scikit-image>=0.21',  # boundary odsF: BSDS thinning
        'pillow',  # image files in tools/infer.py, fewshot.py and the predictions writers
    ],
    extras_require={
        # Uni-Perceiver v2: BPE tokenizer training, caption metrics; RoBERTa text encoder
        'uniperceiver': ['tokenizers>=0.15', 'pycocoevalcap>=1.2'],
        'roberta': ['transformers>=4.40'],
        # tools/deploy/export.py --format onnx, onnxruntime in tools/analysis/benchmark_inference.py
        'deploy': ['onnx>=1.16', 'onnxruntime>=1.18', 'onnxscript>=0.2'],
        'test': ['pytest>=7.4', 'pytest-xdist>=3.3', 'flake8>=7.0', 'isort>=5.12',
                 'scikit-learn>=1.3', 'tokenizers>=0.15',
                 'pycocoevalcap>=1.2', 'transformers>=4.40',
                 'onnx>=1.16', 'onnxruntime>=1.18', 'onnxscript>=0.2'],
    },
)
