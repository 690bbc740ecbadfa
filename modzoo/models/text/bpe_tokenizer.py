"""Byte-level BPE tokenizer (Hugging Face ``tokenizers``): trained on captions or read from a
``tokenizer.json`` such as RoBERTa's."""
import json
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import barrier, get_rank

from modzoo.datasets.synth.ensure import ensure_synth_data
from modzoo.hub import resolve
from modzoo.registry import TASK_UTILS


def _tokenizers():
    try:
        import tokenizers
    except ImportError as error:
        raise ImportError('BPETokenizer needs the `tokenizers` package: pip install tokenizers '
                          "(or pip install 'modzoo[uniperceiver]')") from error
    return tokenizers


def read_captions(files: Sequence[str]) -> List[str]:
    """All ``annotations[*].caption`` strings of COCO caption json files."""
    texts = []
    for path in files:
        if not osp.isfile(path):
            raise FileNotFoundError(f"BPETokenizer: captions file '{path}' not found (expected a "
                                    'COCO captions json to train the tokenizer on)')
        with open(path) as f:
            texts += [ann['caption'] for ann in json.load(f)['annotations']]
    return texts


def train_bpe(texts: Sequence[str], vocab_size: int, special_tokens: Sequence[str]):
    """A lower-casing byte-level BPE ``tokenizers.Tokenizer`` trained on ``texts``.

    Byte level: every byte is in the vocabulary, so no text is out of vocabulary.
    """
    tk = _tokenizers()
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.normalizer = tk.normalizers.Lowercase()
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
                                     show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


@TASK_UTILS.register_module()
class BPETokenizer:
    """Texts -> padded token ids ``<s> tokens </s> <pad>...`` and back.

    Reads ``vocab_file`` (a ``tokenizers`` json: one this class trained, or RoBERTa's
    ``tokenizer.json``; a remote file by modzoo's hub rules, e.g.
    ``hf://FacebookAI/roberta-base/tokenizer.json``). When the file does not exist and
    ``captions`` are given, a byte-level BPE of ``vocab_size`` is trained on them and written
    to ``vocab_file`` (atomically), so every later run reads the same vocabulary. The special
    tokens default to RoBERTa's names.

    Args:
        vocab_file: path of the tokenizer json.
        captions: COCO caption json file(s) to train on when ``vocab_file`` is missing.
        vocab_size: size of a trained vocabulary (byte alphabet and specials included).
        max_length: longest sequence, ``<s>`` and ``</s>`` included; longer texts are cut.
        bos, eos, pad, unk: special token strings.
        synth_root: a SynthScenes folder to render first when it is missing (as
            ``MultiTaskDataset(synth_if_missing=True)``), for captions that live in it.

    In distributed runs rank 0 trains and writes the vocabulary; the other ranks wait.
    """

    def __init__(self, vocab_file: str, captions: Union[str, Sequence[str], None] = None,
                 vocab_size: int = 1000, max_length: int = 32, bos: str = '<s>',
                 eos: str = '</s>', pad: str = '<pad>', unk: str = '<unk>',
                 synth_root: Optional[str] = None):
        tk = _tokenizers()
        if '://' in vocab_file:      # hf://FacebookAI/roberta-base/tokenizer.json, an URL
            vocab_file = resolve(vocab_file)
        if not osp.isfile(vocab_file):
            if captions is None:
                raise FileNotFoundError(
                    f"BPETokenizer: vocab_file '{vocab_file}' not found; pass `captions` (COCO "
                    'caption json files) to train one there')
            if synth_root is not None:
                ensure_synth_data(synth_root)
            if get_rank() == 0:
                files = [captions] if isinstance(captions, str) else list(captions)
                trained = train_bpe(read_captions(files), vocab_size, (bos, pad, eos, unk))
                os.makedirs(osp.dirname(osp.abspath(vocab_file)), exist_ok=True)
                tmp = f'{vocab_file}.tmp{os.getpid()}'
                trained.save(tmp)
                os.replace(tmp, vocab_file)
            barrier()
        self.vocab_file = vocab_file
        self.tokenizer = tk.Tokenizer.from_file(vocab_file)
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        if max_length < 2:
            raise ValueError(f'BPETokenizer: max_length must be >= 2 (<s> and </s>), got '
                             f'{max_length}')
        self.max_length = max_length
        ids = {}
        for name, token in dict(bos=bos, eos=eos, pad=pad, unk=unk).items():
            ids[name] = self.tokenizer.token_to_id(token)
            if ids[name] is None:
                raise KeyError(f"BPETokenizer: special token {token!r} ({name}) is not in the "
                               f"vocabulary of '{vocab_file}'")
        self.bos_id, self.eos_id, self.pad_id, self.unk_id = (
            ids['bos'], ids['eos'], ids['pad'], ids['unk'])

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def special_ids(self) -> Tuple[int, ...]:
        return self.bos_id, self.eos_id, self.pad_id, self.unk_id

    def encode(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Token ids long [B, L] (``<s> ... </s>``, padded with ``<pad>``) and the mask bool
        [B, L] of real tokens; L is the longest text's length, at most ``max_length``."""
        if isinstance(texts, str):
            raise TypeError('BPETokenizer.encode takes a list of texts, got one str')
        rows = [[self.bos_id] + e.ids[:self.max_length - 2] + [self.eos_id] for e in
                self.tokenizer.encode_batch([str(t) for t in texts], add_special_tokens=False)]
        length = max((len(r) for r in rows), default=2)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row)
        lengths = torch.tensor([len(r) for r in rows])
        return ids, torch.arange(length)[None] < lengths[:, None]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids, stopping at the first ``</s>``; special tokens are dropped."""
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        return self.tokenizer.decode([i for i in ids if i not in self.special_ids]).strip()

    def __repr__(self):
        return (f"{type(self).__name__}(vocab_file='{self.vocab_file}', "
                f'vocab_size={self.vocab_size}, max_length={self.max_length})')
