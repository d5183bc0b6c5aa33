// Drives a running `dive serve` with the official openai client: the model list, completions and chat (plain and
// streamed, with usage), concurrent clients, a stream the client aborts (the server counts it as cancelled), and
// errors raised with their status (unknown model 404, bad temperature 400).
// Usage: node openai-client-check.mjs BASE_URL MODEL   (or DIVE_BASE_URL, DIVE_MODEL)
// Prints one JSON line with what the client received; on the first failed check, prints why and exits 1.
import OpenAI from 'openai';

const baseURL = (process.argv[2] ?? process.env.DIVE_BASE_URL ?? '').replace(/\/+$/, '');
const model = process.argv[3] ?? process.env.DIVE_MODEL;
if (!baseURL || !model) {
  console.error('usage: node openai-client-check.mjs BASE_URL MODEL (or DIVE_BASE_URL, DIVE_MODEL)');
  process.exit(2);
}
const client = new OpenAI({ baseURL: baseURL + '/v1', apiKey: 'k', maxRetries: 0, timeout: 60_000 });

class CheckFailed extends Error {}
function check(ok, what) { if (!ok) throw new CheckFailed(what); }
const eq = (a, b, what) => check(a === b, `${what}: expected ${JSON.stringify(b)}, got ${JSON.stringify(a)}`);

async function streamedCompletion(params) {
  let text = '', finish = null, usage = null;
  for await (const chunk of await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } })) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) { text += c.text; finish = c.finish_reason ?? finish; }
  }
  return { text, finish, usage };
}

async function cancelledCount() {
  const r = await fetch(baseURL + '/metrics');
  check(r.ok, `GET /metrics: HTTP ${r.status}`);
  const m = (await r.text()).match(/^dive_requests_total\{outcome="cancelled"\} (\d+)/m);
  return m ? Number(m[1]) : 0;
}

async function expectError(promise, status, what) {
  try {
    await promise;
  } catch (e) {
    check(e instanceof OpenAI.APIError, `${what}: expected an APIError, got ${e}`);
    eq(e.status, status, `${what}: status`);
    check(e.error?.message, `${what}: the error has no message`);
    return { status: e.status, code: e.code ?? null, message: e.error.message };
  }
  throw new CheckFailed(`${what}: the client raised no error`);
}

async function main() {
  const out = { model };

  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  check(models.includes(model), `models.list: ${model} not in ${JSON.stringify(models)}`);
  out.models = models;

  const prompt = 'public static void main(String[] args) {';
  const plain = await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0 });
  eq(plain.object, 'text_completion', 'completion object');
  eq(plain.choices[0].finish_reason, 'length', 'completion finish_reason');
  eq(plain.usage.completion_tokens, 12, 'completion usage.completion_tokens');
  const streamed = await streamedCompletion({ model, prompt, max_tokens: 12, temperature: 0 });
  eq(streamed.text, plain.choices[0].text, 'streamed completion text (vs. the plain one)');
  eq(streamed.finish, 'length', 'streamed completion finish_reason');
  check(streamed.usage, 'streamed completion: no usage chunk with include_usage');
  eq(streamed.usage.prompt_tokens, plain.usage.prompt_tokens, 'streamed completion usage.prompt_tokens');
  out.completion = { prompt, max_tokens: 12, text: plain.choices[0].text, usage: plain.usage };

  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hi' }];
  const chat = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
  eq(chat.object, 'chat.completion', 'chat object');
  eq(chat.choices[0].message.role, 'assistant', 'chat message role');
  let chatText = '', role = null;
  for await (const chunk of await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, stream: true })) {
    const d = chunk.choices[0]?.delta;
    if (d?.role) role = d.role;
    chatText += d?.content ?? '';
  }
  eq(role, 'assistant', 'streamed chat delta role');
  eq(chatText, chat.choices[0].message.content, 'streamed chat text (vs. the plain one)');
  out.chat = { messages, max_tokens: 8, text: chat.choices[0].message.content, usage: chat.usage };

  const prompts = ['import java.util.', 'class Point {', 'for (int i = 0;', 'The quick brown fox', 'def main():', '# Title'];
  out.concurrent = await Promise.all(prompts.map(async (p, i) => {
    const params = { model, prompt: p, max_tokens: 10, temperature: 0 };
    const text = i % 2 ? (await streamedCompletion(params)).text : (await client.completions.create(params)).choices[0].text;
    return { prompt: p, max_tokens: 10, text };
  }));

  const before = await cancelledCount();
  const abort = new AbortController();
  const stream = await client.completions.create(
    { model, prompt: 'a', max_tokens: 600, temperature: 0, stream: true, stop: ['\u0000'] }, { signal: abort.signal });
  let received = 0, finish = null;
  try {  // the client ends the iteration quietly or with APIUserAbortError, depending on where the abort lands
    for await (const chunk of stream) {
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.choices[0]?.text && ++received === 2) abort.abort();
    }
  } catch (e) {
    check(e instanceof OpenAI.APIUserAbortError, `aborted stream: ${e}`);
  }
  check(abort.signal.aborted && finish === null, `aborted stream: it ended (finish_reason ${finish}) before the abort`);
  let after = before;
  for (const until = Date.now() + 30_000; after <= before && Date.now() < until; await new Promise(r => setTimeout(r, 50)))
    after = await cancelledCount();
  check(after > before, `aborted stream: dive_requests_total{outcome="cancelled"} stayed at ${before}`);
  out.cancelled = { before, after };

  out.errors = {
    unknownModel: await expectError(client.completions.create({ model: 'no-such-model', prompt: 'x', max_tokens: 2 }), 404, 'unknown model'),
    badTemperature: await expectError(client.completions.create({ model, prompt: 'x', max_tokens: 2, temperature: 5 }), 400, 'temperature 5'),
  };
  check(out.errors.unknownModel.code === 'model_not_found', `unknown model: code ${out.errors.unknownModel.code}`);

  console.log(JSON.stringify({ ok: true, ...out }));
}

main().catch(e => {
  console.error(e instanceof CheckFailed ? `openai client check failed: ${e.message}` : `openai client check failed: ${e.stack ?? e}`);
  process.exit(1);
});
