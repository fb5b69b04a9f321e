#!/usr/bin/env python3
"""The `openai` package (PyPI) as a real client of `./model --serve`.

Usage: serve_openai.py MODEL_EXE OUT.json

Starts the exported executable's server on a free port of 127.0.0.1, sends
plain and streamed completions through openai.OpenAI(base_url=...), and
writes what came back as the golden transcript tests/test_serve.c replays:
for each request, the JSON body (as sent on the wire) and the text and
finish_reason the client saw. Regenerate with the checkpoint
tests/golden/serve/tiny-test.safetensors:

  gptc export --ckpt tests/golden/serve/tiny-test.safetensors -o /tmp/tiny
  /work/venv-torch/bin/python tests/ref/serve_openai.py /tmp/tiny tests/golden/serve/openai.json
"""
import json
import subprocess
import sys

import openai

# (options, stream): every option a completion takes, plain and streamed
REQUESTS = [
    ({"prompt": "I had", "max_tokens": 40, "seed": 1}, False),
    ({"prompt": "I had", "max_tokens": 40, "seed": 1}, True),
    ({"prompt": "The", "max_tokens": 30, "temperature": 0}, False),
    ({"prompt": "The", "max_tokens": 60, "seed": 9, "temperature": 1.2, "top_p": 0.8}, True),
    ({"prompt": "Jack", "max_tokens": 50, "seed": 4, "stop": ["rod", "zz"]}, False),
    ({"prompt": "Jack", "max_tokens": 50, "seed": 4, "stop": "\n"}, True),
    ({"prompt": "I had", "max_tokens": 25, "seed": 2, "top_k": 3}, False),
]


def main():
    exe, out = sys.argv[1], sys.argv[2]
    srv = subprocess.Popen([exe, "--serve", "--port", "0", "--threads", "1"], stdout=subprocess.PIPE, text=True)
    try:
        line = srv.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)
        model = client.models.list().data[0].id
        transcript = []
        for opts, stream in REQUESTS:
            std = {k: v for k, v in opts.items() if k != "top_k"}
            extra = {"top_k": opts["top_k"]} if "top_k" in opts else None
            r = client.completions.create(model=model, stream=stream, extra_body=extra, **std)
            if stream:
                text, finish = "", None
                for chunk in r:
                    c = chunk.choices[0]
                    text += c.text
                    finish = c.finish_reason or finish
            else:
                text, finish = r.choices[0].text, r.choices[0].finish_reason
            body = dict(model=model, **opts)
            body["stream"] = stream
            transcript.append({"body": json.dumps(body), "text": text, "finish_reason": finish})
        with open(out, "w", encoding="utf-8") as f:
            json.dump({"client": f"openai {openai.__version__}", "requests": transcript}, f, indent=1, ensure_ascii=False)
            f.write("\n")
    finally:
        srv.terminate()
        srv.wait(timeout=30)


if __name__ == "__main__":
    main()
