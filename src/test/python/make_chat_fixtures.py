"""Reference renderings of chat templates by transformers' apply_chat_template (the engine's ChatTemplate is tested
against them). Run: .venv-ref/bin/python src/test/python/make_chat_fixtures.py  → src/test/resources/chat/templates.json
"""
import json
import pathlib

import transformers
from transformers import PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parents[3]
TOKENIZER = ROOT / "src/main/resources/dive/default/tokenizer.json"

TEMPLATES = {
    # ChatML, as Qwen and many others write it
    "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
              "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    # Zephyr's (TinyLlama-1.1B-Chat's): block tags on their own lines, so trim_blocks / lstrip_blocks matter
    "zephyr": "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
              "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
              "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n"
              "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
    # Llama-2-chat's: system folded into the first user turn, strip(), raise_exception on non-alternating roles
    "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
              "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
              "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
              "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
              "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
              "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
              "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
              "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
}

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "  What is 2 + 2?  "},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3 + 3?"}],
]
BAD = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]


def main():
    tok = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER), bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")
    out = {"transformers": transformers.__version__, "bos_token": tok.bos_token, "eos_token": tok.eos_token, "templates": []}
    for name, template in TEMPLATES.items():
        cases = []
        for messages in CONVERSATIONS:
            for gen in (True, False):
                text = tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=gen)
                cases.append({"messages": messages, "add_generation_prompt": gen, "expected": text})
        error = None
        try:
            tok.apply_chat_template(BAD, chat_template=template, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # the template's raise_exception
            error = str(e)
        out["templates"].append({"name": name, "template": template, "cases": cases,
                                 "bad_messages": BAD, "bad_error": error})
    path = ROOT / "src/test/resources/chat/templates.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
