"""The chat template a fine-tuning run trains with, and the token that ends a reply.

Two things decide whether a tuned model answers and then *stops*:

1. The loss must fall on the reply only. For chat rows TRL's `assistant_only_loss` asks the
   template which tokens the assistant wrote, through `{% generation %}` markers; a
   template without them trains on nothing or is refused (trl #4147).
2. Every reply in training must end with the token generation stops at. Our ChatML
   template puts `<|im_end|>` inside the markers, and the tuned model's tokenizer and
   generation config name `<|im_end|>` as EOS, so `generate()` and vLLM stop there.

`prepare_tokenizer` gives a tokenizer such a template: the project's own (ChatML, from
training/tokenizers/tokenizer.py) when it has none or an older copy of ours; a template of
the user's that has the markers is kept; one without them is an error when the run needs
them.
"""

from __future__ import annotations

from training.errors import UserError
from training.tokenizers.tokenizer import CHAT_TEMPLATE, IM_END, IM_START

# The templates our tokenizers carried before: upgraded silently. First without generation
# markers; then with them, but a newline after the last reply too (see CHAT_TEMPLATE).
_OLD_CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)
_LAST_NEWLINE = "{%- if not loop.last or add_generation_prompt %}{{- '\\n' }}{%- endif %}"


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and "generation" in template and "endgeneration" in template


def chatml_for(tokenizer) -> str:
    """ChatML for any tokenizer: our template, ending replies with the tokenizer's EOS when it
    has no `<|im_end|>` token (its im_start/im_end are then plain text)."""
    if _has_tokens(tokenizer):
        return CHAT_TEMPLATE
    if tokenizer.eos_token is None:
        raise UserError("base.tokenizer: has no <|im_end|> token and no eos_token, so a reply cannot end "
                        "with a token that stops generation")
    eos = tokenizer.eos_token.replace("'", "\\'")
    return CHAT_TEMPLATE.replace("message['content'] + '<|im_end|>' }}{%- endgeneration %}",
                                 f"message['content'] + '{eos}' }}}}{{%- endgeneration %}}")


def _is_newline_after_last(template: str, tokenizer) -> bool:
    """Our previous template (or chatml_for's EOS variant of it): a newline after every reply."""
    if not (_has_tokens(tokenizer) or tokenizer.eos_token is not None):
        return False
    return template == chatml_for(tokenizer).replace(_LAST_NEWLINE, "{{- '\\n' }}")


def _has_tokens(tokenizer) -> bool:
    vocab = tokenizer.get_vocab()
    return IM_START in vocab and IM_END in vocab


def stop_token(tokenizer) -> str:
    """The token a reply ends with under `prepare_tokenizer`'s template."""
    return IM_END if _has_tokens(tokenizer) and has_generation_markers(tokenizer.chat_template) \
        and IM_END in tokenizer.chat_template else tokenizer.eos_token


def prepare_tokenizer(tokenizer, *, need_markers: bool, source: str = "base.tokenizer"):
    """Give `tokenizer` (in place) a chat template fit for SFT, and return it.

    Args:
        tokenizer: a transformers tokenizer.
        need_markers: True for chat data trained on the assistant turns only.
        source: the config key named in errors.

    Raises:
        UserError: the tokenizer's own template lacks `{% generation %}` markers and they are needed.
    """
    template = tokenizer.chat_template
    if template is None or template == _OLD_CHATML or _is_newline_after_last(template, tokenizer):
        tokenizer.chat_template = chatml_for(tokenizer)
    elif need_markers and not has_generation_markers(template):
        raise UserError(f"{source}: its chat template has no {{% generation %}} markers, so the loss cannot be "
                        f"limited to the assistant's replies; add them around each assistant message (see "
                        f"training/tokenizers/tokenizer.py CHAT_TEMPLATE), or use data.shape=alpaca")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
