package dive.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dive.io.Checkpoint;
import dive.model.LlamaConfig;
import dive.tensor.Tensor;
import picocli.CommandLine.*;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.Callable;

@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = "Show a checkpoint's config, tensors and parameter count.")
final class InspectCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL_DIR", description = "Hugging Face model folder (config.json, *.safetensors)")
    Path modelDir;

    @Option(names = "--json", description = "print JSON instead of text")
    boolean json;

    @Override
    public Integer call() throws Exception {
        LlamaConfig config = LlamaConfig.load(modelDir);
        try (Checkpoint cp = Checkpoint.open(modelDir)) {
            long params = 0, bytes = 0;
            ObjectMapper om = new ObjectMapper();
            ArrayNode tensors = om.createArrayNode();
            for (String name : cp.names()) {
                Tensor t = cp.tensor(name);
                params += t.numel();
                bytes += t.data().byteSize();
                ObjectNode n = tensors.addObject();
                n.put("name", name).put("dtype", t.dtype().name());
                ArrayNode shape = n.putArray("shape");
                for (long d : t.shape()) shape.add(d);
            }
            if (json) {
                ObjectNode root = om.createObjectNode();
                root.put("model", modelDir.toString());
                root.set("config", om.valueToTree(config));
                root.put("parameters", params).put("bytes", bytes);
                root.set("tensors", tensors);
                System.out.println(om.writerWithDefaultPrettyPrinter().writeValueAsString(root));
            } else {
                System.out.println("model      " + modelDir);
                System.out.println("config     " + config);
                System.out.printf("parameters %,d (%.2f M) in %d tensors, %,d bytes%n", params, params / 1e6, cp.names().size(), bytes);
                for (String name : cp.names()) {
                    Tensor t = cp.tensor(name);
                    System.out.printf("  %-60s %-5s %s%n", name, t.dtype(), Arrays.toString(t.shape()));
                }
            }
        }
        return 0;
    }
}
