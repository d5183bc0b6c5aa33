package dive.cli;

import dive.api.Engine;
import dive.serve.BatchEngine;
import dive.serve.ChatTemplate;
import dive.serve.OpenAiServer;
import dive.serve.ServeOptions;
import dive.util.FileErrors;
import picocli.CommandLine.*;

import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

@Command(name = "serve", mixinStandardHelpOptions = true,
        description = {"Serve a model over an OpenAI-compatible HTTP API with continuous batching:",
                "GET /v1/models, POST /v1/completions, POST /v1/chat/completions (models with a chat template),",
                "GET /health, GET /metrics (Prometheus). Stops on Ctrl-C, letting running requests finish."})
final class ServeCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL_DIR") Path modelDir;
    @Option(names = "--host", defaultValue = "127.0.0.1", paramLabel = "ADDR", description = "address to bind (default ${DEFAULT-VALUE}: this machine only)") String host;
    @Option(names = "--port", defaultValue = "8080", paramLabel = "N", description = "TCP port, 0 for any free one (default ${DEFAULT-VALUE})") int port;
    @Option(names = "--api-key-file", paramLabel = "F", description = "file holding the key clients must send as 'Authorization: Bearer KEY' (default: none)") Path apiKeyFile;
    @Option(names = "--model-name", paramLabel = "NAME", description = "the model id clients name (default: the folder's name)") String modelName;
    @Option(names = "--max-batch", defaultValue = "64", paramLabel = "N", description = "most sequences per batched step (default ${DEFAULT-VALUE})") int maxBatch;
    @Option(names = "--max-queue", defaultValue = "256", paramLabel = "N", description = "most requests waiting; more get HTTP 429 (default ${DEFAULT-VALUE})") int maxQueue;
    @Option(names = "--kv-budget-mb", defaultValue = "1024", paramLabel = "MB", description = "KV-cache memory of all running requests (default ${DEFAULT-VALUE}; part of the memory plan)") long kvBudgetMb;
    @Option(names = "--prefill-tokens", defaultValue = "512", paramLabel = "N", description = "most prompt tokens per step (default ${DEFAULT-VALUE})") int prefillTokens;
    @Mixin CommonOptions common;
    @Mixin LoadFlags loadFlags;

    @Override
    public Integer call() throws Exception {
        if (port < 0 || port > 65535) throw new IllegalArgumentException("--port " + port + ": expected 0 to 65535");
        if (kvBudgetMb < 1 || kvBudgetMb > (1L << 30))
            throw new IllegalArgumentException("--kv-budget-mb " + kvBudgetMb + ": expected a positive number of megabytes");
        ServeOptions options;
        try {
            options = new ServeOptions(maxBatch, maxQueue, kvBudgetMb << 20, prefillTokens);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(e.getMessage().replace("max batch", "--max-batch").replace("max queued", "--max-queue")
                    .replace("prefill tokens per step", "--prefill-tokens"), e);
        }
        String key = null;
        if (apiKeyFile != null) {
            key = new String(FileErrors.readAllBytes(apiKeyFile), java.nio.charset.StandardCharsets.UTF_8).strip();
            if (key.isEmpty() || key.contains("\n")) throw new IllegalArgumentException("--api-key-file " + apiKeyFile + ": expected one line holding the key");
        }
        if (!Files.isDirectory(modelDir)) throw new IllegalArgumentException(modelDir + ": model folder does not exist");
        common.backend();  // the flags are checked before the plan
        MemoryPlans.state(MemoryPlans.serve(modelDir, maxBatch, prefillTokens, options.kvBudgetBytes()), common.quiet);
        ChatTemplate chat = ChatTemplate.load(modelDir);
        String name = modelName != null ? modelName : modelDir.toAbsolutePath().normalize().getFileName().toString();
        Engine engine = common.load(modelDir, loadFlags);
        OpenAiServer server;
        try {
            BatchEngine batch = engine.startBatching(options);
            server = OpenAiServer.start(batch, engine.requireTokenizer(), chat, name, key, new InetSocketAddress(host, port));
        } catch (Exception e) {
            engine.close();
            if (e instanceof java.net.BindException) throw new IllegalArgumentException("--host " + host + " --port " + port + ": " + e.getMessage(), e);
            throw e;
        }
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(Thread.ofPlatform().unstarted(() -> {
            System.err.println("dive serve: stopping (running requests finish first)");
            server.close();
            try { engine.close(); } catch (Exception ignored) { }
            stopped.countDown();
        }));
        System.err.println("dive serve: " + name + " (" + engine.config().numHiddenLayers() + " layers" + (engine.config().moe() != null ? ", MoE" : "")
                + ") at http://" + host + ":" + server.port() + "/v1" + (chat == null ? " (no chat template: /v1/chat/completions answers 400)" : "")
                + (key == null ? "" : ", API key required") + "; max batch " + maxBatch + ", queue " + maxQueue
                + ", KV budget " + (options.kvBudgetBytes() >> 20) + " MB");
        stopped.await();
        return 0;
    }
}
