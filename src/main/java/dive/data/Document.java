package dive.data;

/** One document of a dataset: a stable id (unique within the dataset, e.g. {@code "java/lang/String.java"}) and its UTF-8 text. */
public record Document(String id, String text) {
    public Document {
        if (id == null || id.isEmpty()) throw new IllegalArgumentException("document id must not be empty");
        if (text == null) throw new IllegalArgumentException("document " + id + ": text must not be null");
    }
}
